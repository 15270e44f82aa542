//! Delivery guarantees through the real `momento` SDK against the emulator: what is answered
//! 2xx is never lost, and nothing is processed twice.

use crate::support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::emulator::Emulator;
use support::on_emulator::{momento_section, wait_for_readiness};
use support::{ADMIN_TOKEN, SECRET, TestApp, delivery_preamble, event, settings, spawn_settings};
use tonic::Code;

/// Two routes: the seed's, and one with two effect steps.
fn config(emulator: &Emulator, delivery: &str) -> String {
    format!(
        r#"{preamble}
[[routes]]
name = "shout"
match = {{ cache = "chat", topic = "topic 1" }}
steps = ["uppercase", {{ publish = {{ topic = "topic 2" }} }}]

[[routes]]
name = "two-effects"
match = {{ cache = "chat", topic = "twice" }}
steps = [{{ publish = {{ topic = "first" }} }}, {{ publish = {{ topic = "second" }} }}]
{momento}"#,
        preamble = delivery_preamble("100ms", "200ms", delivery),
        momento = momento_section(emulator)
    )
}

async fn start(emulator: &Emulator, delivery: &str) -> TestApp {
    let app = spawn_settings(settings(&config(emulator, delivery))).await;
    assert!(wait_for_readiness(&app, 200, Duration::from_secs(5)).await);
    app
}

/// How many times each text was published on `topic`.
fn published_on(emulator: &Emulator, topic: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for published in emulator.published().into_iter().filter(|published| published.topic == topic) {
        *counts.entry(published.text.unwrap_or_default()).or_insert(0) += 1;
    }
    counts
}

async fn eventually(wait: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition()
}

#[tokio::test]
async fn events_arriving_during_an_outage_are_all_answered_2xx_in_time_then_published_exactly_once() {
    let emulator = Emulator::start().await;
    let app = start(&emulator, "").await;
    emulator.fail_all(Code::Unavailable);

    let mut slowest = Duration::ZERO;
    for n in 0..20 {
        let started = Instant::now();
        let response = app.post_event("chat", "topic 1", &format!("event {n}")).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(response.status(), 202, "event {n}");
    }
    assert!(slowest < Duration::from_secs(4), "slowest answer took {slowest:?}");
    assert_eq!(app.admin_get("/v1/status").await["delivery"]["spooled"], 20);

    emulator.heal();
    assert!(eventually(Duration::from_secs(10), || published_on(&emulator, "topic 2").len() == 20).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let published = published_on(&emulator, "topic 2");
    assert_eq!(published.len(), 20);
    assert!(published.values().all(|&times| times == 1), "{published:?}");
    assert!(published.contains_key("EVENT 7"));
    assert_eq!(app.admin_get("/v1/status").await["delivery"]["spooled"], 0);
}

#[tokio::test]
async fn a_momento_too_slow_to_answer_gets_its_event_spooled_in_time() {
    let emulator = Emulator::start().await;
    let app = start(&emulator, "").await;
    emulator.delay_next(1000, Duration::from_secs(3));

    let started = Instant::now();
    let response = app.post_event("chat", "topic 1", "patience").await;

    assert_eq!(response.status(), 202);
    assert!(started.elapsed() < Duration::from_millis(2500), "answered after {:?}", started.elapsed());
    emulator.heal();
    assert!(
        eventually(Duration::from_secs(10), || published_on(&emulator, "topic 2").contains_key("PATIENCE"))
            .await
    );
}

#[tokio::test]
async fn shared_dedup_during_an_outage_accepts_the_event_instead_of_losing_it() {
    let emulator = Emulator::start().await;
    // The default timeouts: 4 s per request, 1 s per Momento call.
    let config = config(&emulator, "dedup = \"momento\"\ndedup_cache = \"chat\"")
        .replace("request_timeout = \"2s\"", "request_timeout = \"4s\"");
    let app = spawn_settings(settings(&config)).await;
    assert!(wait_for_readiness(&app, 200, Duration::from_secs(5)).await);
    emulator.delay_next(1000, Duration::from_secs(10));

    let started = Instant::now();
    let response = app.post_event("chat", "topic 1", "still counted").await;

    assert_eq!(response.status(), 202, "spooled, not refused");
    assert!(started.elapsed() < Duration::from_millis(4500), "answered after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_pipeline_failing_at_its_second_effect_is_retried_from_that_step_only() {
    let emulator = Emulator::start().await;
    let app = start(&emulator, "").await;
    emulator.fail_publishes_to("second", usize::MAX, Code::Unavailable);

    assert_eq!(app.post_event("chat", "twice", "once each").await.status(), 202);
    let pending = app.admin_get("/v1/admin/spool").await;
    assert_eq!(pending["events"][0]["next_step"], 1, "{pending}");

    tokio::time::sleep(Duration::from_millis(400)).await;
    emulator.heal();
    assert!(eventually(Duration::from_secs(5), || published_on(&emulator, "second").len() == 1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        published_on(&emulator, "first").get("once each"),
        Some(&1),
        "the first publish is not repeated"
    );
    assert_eq!(published_on(&emulator, "second").get("once each"), Some(&1));
}

fn cli(app: &TestApp, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_topic-relay"))
        .args(["spool", "--url", &app.address])
        .args(args)
        .env("TOPIC_RELAY_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_that_never_succeeds_is_dead_lettered_listed_and_replayed_once_fixed() {
    let emulator = Emulator::start().await;
    let app = start(&emulator, "max_attempts = 3").await;
    emulator.fail_publishes_to("second", usize::MAX, Code::Unavailable);

    assert_eq!(app.post_event("chat", "twice", "stubborn").await.status(), 202);
    let dead = || async { app.admin_get("/v1/status").await["delivery"]["dead_letters"] == 1 };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dead().await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listing = tokio::task::block_in_place(|| cli(&app, &["dead-letters"]));
    assert!(listing.contains("two-effects") && listing.contains("gave up after 3 attempts"), "{listing}");
    let letters = app.admin_get("/v1/admin/dead-letters").await;
    let id = letters["dead_letters"][0]["id"].as_u64().expect("one dead letter");

    emulator.heal();
    let replayed = tokio::task::block_in_place(|| cli(&app, &["replay", &id.to_string()]));
    assert!(replayed.contains("replayed 1"), "{replayed}");

    assert!(eventually(Duration::from_secs(5), || published_on(&emulator, "second").len() == 1).await);
    assert_eq!(published_on(&emulator, "first").get("stubborn"), Some(&1), "resumed at the failed step");
    let status = tokio::task::block_in_place(|| cli(&app, &["status"]));
    assert!(status.contains("dead letters: 0"), "{status}");
}

#[tokio::test]
async fn the_same_signed_request_twice_is_processed_once() {
    let emulator = Emulator::start().await;
    let app = start(&emulator, "").await;
    let body = event("chat", "topic 1", "say it once");
    let signature = app.sign(&body);

    let first = app.post("/webhook", body.clone(), Some(&signature)).await;
    let second = app.post("/webhook", body, Some(&signature)).await;

    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 409);
    let answer: Value = second.json().await.unwrap();
    assert_eq!(answer["error"], "duplicate_event");
    assert_eq!(published_on(&emulator, "topic 2").get("SAY IT ONCE"), Some(&1));
}

#[tokio::test]
async fn replicas_sharing_momento_dedup_process_a_replayed_request_once() {
    let emulator = Emulator::start().await;
    let shared = "dedup = \"momento\"\ndedup_cache = \"chat\"";
    let (replica_a, replica_b) = (start(&emulator, shared).await, start(&emulator, shared).await);
    let body = event("chat", "topic 1", "one of us");
    let signature = replica_a.sign(&body);

    let first = replica_a.post("/webhook", body.clone(), Some(&signature)).await;
    let replayed = replica_b.post("/webhook", body, Some(&signature)).await;

    assert_eq!((first.status().as_u16(), replayed.status().as_u16()), (200, 409));
    assert_eq!(published_on(&emulator, "topic 2").get("ONE OF US"), Some(&1));
    let seen = emulator.calls().iter().filter(|call| call.method == "set_if").count();
    assert_eq!(seen, 2, "each replica asked Momento once");
}

#[tokio::test]
async fn write_ahead_mode_writes_every_event_before_its_steps_run() {
    let emulator = Emulator::start().await;
    let app = start(&emulator, "mode = \"spool\"").await;

    assert_eq!(app.post_event("chat", "topic 1", "logged first").await.status(), 200);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("topic_relay_spool_commit_batch_size_count 2\n"),
        "written, then removed:\n{metrics}"
    );
    assert!(metrics.contains("topic_relay_spooled_events 0"));

    emulator.fail_all(Code::Unavailable);
    assert_eq!(app.post_event("chat", "topic 1", "kept").await.status(), 202);
    let pending = app.admin_get("/v1/admin/spool").await;
    assert_eq!(pending["events"][0]["message"]["text"], "KEPT", "kept as it was after the uppercase step");
    assert_eq!(pending["events"][0]["next_step"], 1);
}

#[tokio::test]
async fn a_full_spool_answers_503_and_keeps_what_it_holds() {
    let emulator = Emulator::start().await;
    let app = start(&emulator, "max_spooled_events = 2").await;
    emulator.fail_all(Code::Unavailable);

    let statuses: Vec<u16> = [
        app.post_event("chat", "topic 1", "a").await.status().as_u16(),
        app.post_event("chat", "topic 1", "b").await.status().as_u16(),
        app.post_event("chat", "topic 1", "c").await.status().as_u16(),
    ]
    .into();

    assert_eq!(statuses, vec![202, 202, 503]);
    let refused: Value = app.post_event("chat", "topic 1", "d").await.json().await.unwrap();
    assert_eq!(refused["error"], "spool_full");
    emulator.heal();
    assert!(eventually(Duration::from_secs(5), || published_on(&emulator, "topic 2").len() == 2).await);
    assert_eq!(published_on(&emulator, "topic 2").keys().collect::<Vec<_>>(), ["A", "B"]);
}

#[tokio::test]
async fn a_graceful_stop_keeps_spooled_events_and_the_next_start_delivers_them() {
    let emulator = Emulator::start().await;
    let spool_dir = tempfile::tempdir().unwrap();
    let delivery = format!("spool_dir = \"{}\"", spool_dir.path().display());
    let app = start(&emulator, &delivery).await;
    emulator.fail_all(Code::Unavailable);
    for text in ["x", "y", "z"] {
        assert_eq!(app.post_event("chat", "topic 1", text).await.status(), 202);
    }
    app.stop().await.unwrap();
    assert!(published_on(&emulator, "topic 2").is_empty());

    emulator.heal();
    let _restarted = start(&emulator, &delivery).await;
    assert!(eventually(Duration::from_secs(5), || published_on(&emulator, "topic 2").len() == 3).await);
    assert!(published_on(&emulator, "topic 2").values().all(|&times| times == 1));
}

#[tokio::test]
async fn a_permanent_backend_error_makes_a_dead_letter_at_once_not_a_lost_event() {
    let emulator = Emulator::start().await;
    let app = start(&emulator, "").await;
    emulator.fail_next(1, Code::PermissionDenied);

    let response = app.post_event("chat", "topic 1", "revoked key").await;

    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["outcome"], "dead_lettered");
    assert_eq!(emulator.publish_attempts(), 1, "not retried");
    let letters = app.admin_get("/v1/admin/dead-letters").await;
    assert!(letters["dead_letters"][0]["reason"].as_str().unwrap().contains("not authorized"), "{letters}");
}

#[tokio::test]
async fn a_dead_letter_is_also_published_to_the_dead_letter_topic() {
    let emulator = Emulator::start().await;
    let app = start(&emulator, "dead_letter_topic = { cache = \"ops\", topic = \"dead-letters\" }").await;
    emulator.fail_next(1, Code::NotFound);

    assert_eq!(app.post_event("chat", "topic 1", "no such cache").await.status(), 202);

    let is_notice = |published: &support::emulator::Published| published.topic == "dead-letters";
    assert!(eventually(Duration::from_secs(5), || emulator.published().iter().any(is_notice)).await);
    let notices: Vec<_> = emulator.published().into_iter().filter(is_notice).collect();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].cache, "ops");
    let notice: Value = serde_json::from_str(notices[0].text.as_deref().unwrap()).unwrap();
    assert_eq!(notice["event"]["message"]["text"], "NO SUCH CACHE");
    assert_eq!(notice["event"]["route"], "shout");
    assert!(notice["reason"].as_str().unwrap().contains("not found"), "{notice}");
    assert_eq!(notice["id"], app.admin_get("/v1/admin/dead-letters").await["dead_letters"][0]["id"]);
}

#[tokio::test]
async fn with_the_spool_off_failures_are_answered_503_and_502() {
    let emulator = Emulator::start().await;
    let app = start(&emulator, "mode = \"off\"").await;

    emulator.fail_all(Code::Unavailable);
    let started = Instant::now();
    let unavailable = app.post_event("chat", "topic 1", "lost").await;
    assert!(started.elapsed() < Duration::from_millis(4500));
    assert_eq!(unavailable.status(), 503);
    assert_eq!(unavailable.json::<Value>().await.unwrap()["error"], "backend_unavailable");

    emulator.heal();
    emulator.fail_next(1, Code::PermissionDenied);
    let refused = app.post_event("chat", "topic 1", "refused").await;
    assert_eq!(refused.status(), 502);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"], "backend_error");
}

#[tokio::test]
async fn the_admin_api_needs_its_token_and_is_off_without_one() {
    let emulator = Emulator::start().await;
    let app = start(&emulator, "").await;
    let get = |token: Option<&str>| {
        let request = app.client.get(app.url("/v1/admin/dead-letters"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
    };
    assert_eq!(get(None).await.unwrap().status(), 401);
    assert_eq!(get(Some("test-admin-token-012345678X")).await.unwrap().status(), 401);
    assert_eq!(get(Some(SECRET)).await.unwrap().status(), 401);
    assert_eq!(get(Some(ADMIN_TOKEN)).await.unwrap().status(), 200);

    let without_admin = config(&emulator, "").replace(&format!("token = \"{ADMIN_TOKEN}\""), "");
    let app = spawn_settings(settings(&without_admin)).await;
    let response =
        app.client.get(app.url("/v1/admin/dead-letters")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 404);
}
