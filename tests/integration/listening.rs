//! Listening to topics on the Momento backend, over Momento's own stream against the emulator:
//! items are processed once however streams break, relays restart or replicas share topics.

use crate::support;

use std::time::Duration;

use support::emulator::Emulator;
use support::on_emulator::{eventually, inbox_metric, listener, republished, wait_for_readiness};
use support::{TestApp, spawn_app_with};
use tonic::Code;

/// Waits until the relay's stream on `topic 1` is open on the emulator.
async fn wait_for_subscriber(emulator: &Emulator) {
    let subscribed =
        eventually(Duration::from_secs(20), || emulator.subscribers("chat", "topic 1") > 0).await;
    assert!(subscribed, "the relay subscribes to the topic");
}

async fn status(app: &TestApp) -> serde_json::Value {
    app.client.get(app.url("/v1/status")).send().await.unwrap().json().await.unwrap()
}

/// The first stream in `/v1/status` once its state is `state`, or as it is after 5 s.
async fn first_stream_once_it_is(app: &TestApp, state: &str) -> serde_json::Value {
    let mut stream = serde_json::Value::Null;
    for _ in 0..250 {
        stream = status(app).await["subscriptions"][0].clone();
        if stream["state"] == state {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stream
}

/// Every one of `texts`, uppercased with its publisher, republished exactly once.
fn assert_each_once(emulator: &Emulator, texts: impl IntoIterator<Item = String>) {
    let counts = republished(emulator);
    let texts: Vec<String> = texts.into_iter().collect();
    let missing: Vec<&String> = texts.iter().filter(|text| !counts.contains_key(*text)).collect();
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, times)| **times > 1).collect();
    assert!(missing.is_empty(), "never processed: {missing:?}");
    assert!(twice.is_empty(), "processed more than once: {twice:?}");
    assert_eq!(counts.len(), texts.len(), "nothing else was published");
}

fn expected(from: usize, to: usize) -> impl Iterator<Item = String> {
    (from..to).map(|n| format!("USER-{n}: ITEM {n}"))
}

fn publish_items(emulator: &Emulator, from: usize, to: usize) {
    for n in from..to {
        emulator.publish_as("chat", "topic 1", &format!("item {n}"), &format!("user-{n}"));
    }
}

/// `config` with waits between subscribes of `initial` doubling to `max`, instead of the
/// test listener's few milliseconds.
fn slow_reconnects(config: String, initial: &str, max: &str) -> String {
    config
        .replace("reconnect_initial = \"1ms\"", &format!("reconnect_initial = \"{initial}\""))
        .replace("reconnect_max = \"4ms\"", &format!("reconnect_max = \"{max}\""))
}

/// Subscribe calls the emulator receives over the next `span`.
async fn subscribe_calls_during(emulator: &Emulator, span: Duration) -> usize {
    let before = emulator.subscribe_calls();
    tokio::time::sleep(span).await;
    emulator.subscribe_calls() - before
}

/// Ends every injected failure, then checks that the relay subscribes again and processes
/// an item published after that.
async fn heal_and_receive(emulator: &Emulator) {
    emulator.heal();
    wait_for_subscriber(emulator).await;
    emulator.publish_as("chat", "topic 1", "back", "user-1");
    let arrived =
        eventually(Duration::from_secs(10), || republished(emulator).contains_key("USER-1: BACK")).await;
    assert!(arrived, "{:?}", republished(emulator));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_item_published_on_a_subscribed_topic_is_uppercased_and_republished() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(&listener(&emulator, dir.path(), "")).await;
    wait_for_subscriber(&emulator).await;
    emulator.publish_as("chat", "topic 1", "hello", "user-42");
    emulator.publish_bytes_as("chat", "topic 1", &[0xff, 0xfe], "user-7");
    let arrived = eventually(Duration::from_secs(10), || republished(&emulator).len() == 2).await;
    assert!(arrived, "{:?}", republished(&emulator));
    assert!(republished(&emulator).contains_key("USER-42: HELLO"));
    assert!(republished(&emulator).contains_key("USER-7: //4="), "bytes that are not UTF-8 come as base64");
    assert_eq!(inbox_metric(&app, "topic_relay_subscription_binary_items_total").await, 1.0);
    let status = status(&app).await;
    let stream = &status["subscriptions"][0];
    assert_eq!(
        (stream["state"].as_str(), stream["owned"].as_bool()),
        (Some("listening"), Some(true)),
        "{status}"
    );
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_cut_while_items_flow_still_process_every_item_exactly_once() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(&listener(&emulator, dir.path(), "")).await;
    wait_for_subscriber(&emulator).await;
    let mut cuts = 0;
    for batch in 0..30 {
        publish_items(&emulator, batch * 10, batch * 10 + 10);
        tokio::time::sleep(Duration::from_millis(5)).await;
        cuts += emulator.cut_streams();
        // The relay subscribes again; cut the new stream, not the one already gone.
        wait_for_subscriber(&emulator).await;
    }
    let all = eventually(Duration::from_secs(20), || republished(&emulator).len() >= 300).await;
    assert!(all, "{} of 300 processed", republished(&emulator).len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_each_once(&emulator, expected(0, 300));
    assert_eq!(cuts, 30, "every cut broke a live stream");
    // Items received but not yet done when a stream broke are asked for again, and skipped
    // as repeats if they come back after all; nothing is missed.
    assert_eq!(inbox_metric(&app, "topic_relay_subscription_missed_total").await, 0.0);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_stopped_while_items_are_published_resumes_at_its_checkpoint_after_a_restart() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = listener(&emulator, dir.path(), "");
    let first = spawn_app_with(&config).await;
    wait_for_subscriber(&emulator).await;
    publish_items(&emulator, 0, 100);
    let publisher = {
        let emulator_items = (100..200).map(|n| (format!("item {n}"), format!("user-{n}")));
        let items: Vec<_> = emulator_items.collect();
        let emulator = &emulator;
        async move {
            for (text, token_id) in items {
                emulator.publish_as("chat", "topic 1", &text, &token_id);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    // SIGTERM's path, halfway through the publishing; then a new process on the same disk.
    let stop_and_restart = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        first.stop().await.unwrap();
        spawn_app_with(&config).await
    };
    let ((), second) = tokio::join!(publisher, stop_and_restart);
    let all = eventually(Duration::from_secs(20), || republished(&emulator).len() >= 200).await;
    assert!(all, "{} of 200 processed", republished(&emulator).len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_each_once(&emulator, expected(0, 200));
    second.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_relays_sharing_a_topic_under_a_lease_process_each_item_once() {
    let emulator = Emulator::start().await;
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = spawn_app_with(&listener(&emulator, one.path(), "")).await;
    let second = spawn_app_with(&listener(&emulator, two.path(), "")).await;
    wait_for_subscriber(&emulator).await;
    publish_items(&emulator, 0, 100);
    let all = eventually(Duration::from_secs(10), || republished(&emulator).len() >= 100).await;
    assert!(all, "{} of 100 processed", republished(&emulator).len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_each_once(&emulator, expected(0, 100));
    let owners = [status(&first).await, status(&second).await]
        .iter()
        .filter(|status| status["subscriptions"][0]["owned"] == true)
        .count();
    assert_eq!(owners, 1, "exactly one replica owns the topic");
    assert_eq!(emulator.subscribers("chat", "topic 1"), 1, "the other stands by without a stream");
    first.stop().await.unwrap();
    second.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jump_in_sequence_numbers_is_counted_as_missed_and_a_new_page_is_not() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(&listener(&emulator, dir.path(), "")).await;
    wait_for_subscriber(&emulator).await;
    publish_items(&emulator, 0, 3);
    emulator.skip_sequence_numbers("chat", "topic 1", 5);
    publish_items(&emulator, 3, 6);
    emulator.start_new_page("chat", "topic 1");
    publish_items(&emulator, 6, 9);
    let all = eventually(Duration::from_secs(10), || republished(&emulator).len() >= 9).await;
    assert!(all, "{:?}", republished(&emulator));
    assert_each_once(&emulator, expected(0, 9));
    assert_eq!(inbox_metric(&app, "topic_relay_subscription_missed_total").await, 5.0);
    assert_eq!(inbox_metric(&app, "topic_relay_subscription_new_pages_total").await, 1.0);
    app.stop().await.unwrap();
}

/// The value of the series `name{subscription="inbox",topic="topic 1",label="value"}`.
async fn metric_by(app: &TestApp, name: &str, label: &str, value: &str) -> f64 {
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = format!("{name}{{subscription=\"inbox\",topic=\"topic 1\",{label}=\"{value}\"}} ");
    let line = text.lines().find(|line| line.starts_with(&series));
    line.and_then(|line| line[series.len()..].parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn items_a_route_refuses_on_purpose_are_counted_by_error_and_the_rest_by_outcome_and_all_timed() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let moderated = listener(&emulator, dir.path(), "").replace(
        "[[routes]]\nname = \"shout\"",
        "[[routes]]\nname = \"banned\"\nmatch = { subscription = \"inbox\", token_id = \"banned-*\" }\n\
         steps = [{ reject = { reason = \"banned\" } }]\n\n[[routes]]\nname = \"shout\"",
    );
    assert!(moderated.contains("name = \"banned\""), "the route is added:\n{moderated}");
    let app = spawn_app_with(&moderated).await;
    wait_for_subscriber(&emulator).await;
    for n in 0..3 {
        emulator.publish_as("chat", "topic 1", &format!("spam {n}"), &format!("banned-{n}"));
    }
    publish_items(&emulator, 0, 2);
    let events = "topic_relay_subscription_events_total";
    // Items run in order, so once the last one is counted the refused ones are too.
    let mut processed = 0.0;
    for _ in 0..500 {
        processed = metric_by(&app, events, "outcome", "processed").await;
        if processed >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(processed, 2.0);
    assert_each_once(&emulator, expected(0, 2));
    let refusals = "topic_relay_subscription_refusals_total";
    assert_eq!(metric_by(&app, refusals, "error", "rejected").await, 3.0);
    assert_eq!(metric_by(&app, refusals, "error", "no_route").await, 0.0);
    assert_eq!(metric_by(&app, events, "outcome", "spooled").await, 0.0);
    assert_eq!(inbox_metric(&app, "topic_relay_subscription_items_total").await, 5.0);
    let timed = inbox_metric(&app, "topic_relay_subscription_item_duration_seconds_count").await;
    assert_eq!(timed, 5.0, "each item done is timed, refused or not");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_item_over_the_size_limit_is_skipped_and_counted_and_the_stream_goes_on() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config =
        listener(&emulator, dir.path(), "").replace("[server]\n", "[server]\nmax_body_bytes = 4096\n");
    assert!(config.contains("max_body_bytes = 4096"));
    let app = spawn_app_with(&config).await;
    wait_for_subscriber(&emulator).await;
    emulator.publish_as("chat", "topic 1", &"x".repeat(4097), "user-1");
    emulator.publish_bytes_as("chat", "topic 1", &[0xff; 5000], "user-2");
    emulator.publish_as("chat", "topic 1", &"y".repeat(4096), "user-3");
    let done = eventually(Duration::from_secs(10), || republished(&emulator).len() == 1).await;
    assert!(done, "{:?}", republished(&emulator).keys().map(|text| &text[..12]).collect::<Vec<_>>());
    assert!(republished(&emulator).contains_key(&format!("USER-3: {}", "Y".repeat(4096))));
    let refusals = "topic_relay_subscription_refusals_total";
    assert_eq!(metric_by(&app, refusals, "error", "message_too_large").await, 2.0);
    assert_eq!(inbox_metric(&app, "topic_relay_subscription_items_total").await, 3.0);
    let status = status(&app).await;
    assert_eq!(status["subscriptions"][0]["state"], "listening", "{status}");
    app.stop().await.unwrap();
    // Skipped, the two are behind the checkpoint: a restart does not read them again.
    let again = spawn_app_with(&config).await;
    wait_for_subscriber(&emulator).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(metric_by(&again, refusals, "error", "message_too_large").await, 0.0);
    again.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn after_many_hundreds_of_failed_subscribes_the_relay_still_subscribes_and_receives() {
    let emulator = Emulator::start().await;
    // Past the 400 streams after which one SDK client refuses to open another.
    emulator.fail_subscribes(600, Code::Unavailable);
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(&listener(&emulator, dir.path(), "")).await;
    let subscribed =
        eventually(Duration::from_secs(60), || emulator.subscribers("chat", "topic 1") > 0).await;
    assert!(subscribed, "{} subscribe calls, still not subscribed", emulator.subscribe_calls());
    assert!(emulator.subscribe_calls() > 600);
    emulator.publish_as("chat", "topic 1", "still here", "user-1");
    let arrived =
        eventually(Duration::from_secs(10), || republished(&emulator).contains_key("USER-1: STILL HERE"))
            .await;
    assert!(arrived);
    assert!(inbox_metric(&app, "topic_relay_subscription_subscribe_failures_total").await >= 600.0);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_that_cannot_be_subscribed_to_shows_in_readiness_status_and_metrics() {
    let emulator = Emulator::start().await;
    emulator.fail_subscribes(usize::MAX, Code::NotFound);
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(&listener(&emulator, dir.path(), "")).await;
    // Until the backend's first probe answers, /readyz gives that reason instead.
    let mut readyz = String::new();
    for _ in 0..500 {
        readyz = app.client.get(app.url("/readyz")).send().await.unwrap().text().await.unwrap();
        if readyz.contains("subscription_failing") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(readyz.contains("subscription_failing"), "{readyz}");
    let status = status(&app).await;
    let stream = &status["subscriptions"][0];
    assert_eq!(stream["state"], "failing", "{status}");
    assert!(stream["last_error"].as_str().unwrap().contains("not found"), "{status}");
    assert!(inbox_metric(&app, "topic_relay_subscription_subscribe_failures_total").await >= 1.0);
    emulator.heal();
    assert!(wait_for_readiness(&app, 200, Duration::from_secs(10)).await, "ready once it subscribes");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_topic_of_a_subscription_that_does_not_affect_readiness_leaves_the_relay_ready() {
    let emulator = Emulator::start().await;
    emulator.fail_subscribes(usize::MAX, Code::NotFound);
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(&listener(&emulator, dir.path(), "affects_readiness = false")).await;
    let stream = first_stream_once_it_is(&app, "failing").await;
    assert_eq!(stream["state"], "failing", "{stream}");
    // The service's message echoed the API key; the relay shows it redacted.
    let last_error = stream["last_error"].as_str().unwrap();
    assert!(last_error.contains("for key <redacted>"), "{last_error}");
    let whole_status = status(&app).await.to_string();
    assert!(!whole_status.contains(&support::emulator::test_api_key()), "{whole_status}");
    assert!(wait_for_readiness(&app, 200, Duration::from_secs(10)).await, "ready while the topic fails");
    assert_eq!(status(&app).await["subscriptions"][0]["state"], "failing");
    let readyz = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
    // An operator still sees it, without curl.
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_topic-relay"))
        .args(["spool", "--url", &app.address, "status"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("stream:       inbox/topic 1: failing") && shown.contains("not found"), "{shown}");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_broken_while_momento_refuses_subscribes_shows_as_failing_and_is_retried_with_backoff() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(&slow_reconnects(listener(&emulator, dir.path(), ""), "200ms", "1s")).await;
    wait_for_subscriber(&emulator).await;

    emulator.fail_subscribes(usize::MAX, Code::Unavailable);
    assert_eq!(emulator.cut_streams(), 1);
    let stream = first_stream_once_it_is(&app, "failing").await;
    assert_eq!(stream["state"], "failing", "{stream}");
    assert!(stream["last_error"].as_str().unwrap().contains("unavailable"), "{stream}");
    let readyz = app.client.get(app.url("/readyz")).send().await.unwrap().text().await.unwrap();
    assert!(readyz.contains("subscription_failing"), "{readyz}");

    // Waits of 200 ms doubling to 1 s: a handful of calls, not one after another.
    let calls = subscribe_calls_during(&emulator, Duration::from_secs(2)).await;
    assert!(calls <= 8, "{calls} subscribe calls in 2 s");

    heal_and_receive(&emulator).await;
    assert_eq!(status(&app).await["subscriptions"][0]["state"], "listening");
    app.stop().await.unwrap();
}

/// Starts a relay whose topic queue holds one item, holds its first `held` republishes for
/// `delay` each so that its worker falls behind, publishes `count` items, and checks that
/// each was processed exactly once within `within`. `delay` stays under the call timeout
/// (1 s): a publish held past it is retried, and the emulator keeps both.
async fn burst_past_a_one_item_queue(
    held: usize,
    delay: Duration,
    count: usize,
    within: Duration,
) -> (TestApp, Emulator, tempfile::TempDir) {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(&listener(&emulator, dir.path(), "queue = 1")).await;
    wait_for_subscriber(&emulator).await;
    emulator.delay_next_publishes(held, delay);
    publish_items(&emulator, 0, count);
    let all = eventually(within, || republished(&emulator).len() >= count).await;
    assert!(all, "{} of {count} processed", republished(&emulator).len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_each_once(&emulator, expected(0, count));
    (app, emulator, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn items_past_a_full_queue_go_to_the_spool_and_are_still_processed_once() {
    // Slow publishes hold up the topic's worker while items keep coming.
    let (app, _emulator, _dir) =
        burst_past_a_one_item_queue(5, Duration::from_millis(200), 30, Duration::from_secs(20)).await;
    assert!(inbox_metric(&app, "topic_relay_subscription_spilled_total").await >= 1.0);
    assert_eq!(inbox_metric(&app, "topic_relay_subscription_lost_total").await, 0.0);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_past_a_full_queue_is_spooled_many_items_a_commit() {
    let (app, _emulator, _dir) =
        burst_past_a_one_item_queue(1, Duration::from_millis(600), 200, Duration::from_secs(30)).await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = |name: &str| -> f64 {
        let line = text.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("no {name}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let spilled = inbox_metric(&app, "topic_relay_subscription_spilled_total").await;
    let commits = series("topic_relay_spool_commit_batch_size_count");
    let written = series("topic_relay_spool_commit_batch_size_sum");
    // Each spilled item is written once, and removed once it is redelivered.
    assert!(spilled >= 100.0, "{spilled} spilled");
    // One item a commit when the stream waits for each; many while the worker is held.
    assert!(written / commits > 4.0, "{written} changes in {commits} commits, {spilled} spilled");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_that_cannot_be_taken_shows_in_status_and_readiness() {
    let emulator = Emulator::start().await;
    emulator.fail_all(Code::PermissionDenied);
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(&listener(&emulator, dir.path(), "")).await;
    let failing = async {
        loop {
            let status = status(&app).await;
            if status["subscriptions"][0]["state"] == "failing" {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let status =
        tokio::time::timeout(Duration::from_secs(10), failing).await.expect("the stream shows failing");
    let error = status["subscriptions"][0]["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("not authorized"), "{status}");
    assert!(wait_for_readiness(&app, 503, Duration::from_secs(5)).await);
    emulator.heal();
    wait_for_subscriber(&emulator).await;
    assert!(wait_for_readiness(&app, 200, Duration::from_secs(10)).await, "ready once it owns and listens");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_item_slower_than_its_budget_at_shutdown_is_spooled_and_delivered_once_after_a_restart() {
    const SLOW_MS: u64 = 4_000;
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = listener(&emulator, dir.path(), "");
    let slow = config
        .replace("shutdown_grace = \"5s\"", "shutdown_grace = \"2s\"\nrequest_timeout = \"2s\"")
        .replace("\"uppercase\",", &format!("\"uppercase\", {{ sleep = {{ ms = {SLOW_MS} }} }},"));
    let first = spawn_app_with(&slow).await;
    wait_for_subscriber(&emulator).await;
    emulator.publish_as("chat", "topic 1", "slow", "user-1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The item's inline budget (3/4 of request_timeout) runs out within the shutdown grace, so
    // the stream hands it to the spool and stops; nothing of it runs after the relay stopped.
    first.stop().await.unwrap();
    tokio::time::sleep(Duration::from_millis(SLOW_MS + 500)).await;
    assert!(republished(&emulator).is_empty(), "{:?}", republished(&emulator));

    let second = spawn_app_with(&config).await;
    let delivered = eventually(Duration::from_secs(20), || !republished(&emulator).is_empty()).await;
    assert!(delivered, "the item is delivered after the restart");
    assert_each_once(&emulator, ["USER-1: SLOW".to_owned()]);
    second.stop().await.unwrap();
}

/// Whether the first stream's checkpoint, as `/v1/status` shows it, reaches sequence number
/// `sequence` within 10 s.
async fn checkpoint_reaches(app: &TestApp, sequence: u64) -> bool {
    for _ in 0..500 {
        if status(app).await["subscriptions"][0]["resume_at"]["sequence"] == sequence {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_still_busy_when_the_shutdown_grace_ends_is_ended_and_resumes_at_its_checkpoint() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A route that makes no Momento call, so that Momento hanging holds up only the stream's
    // own calls: checkpoint writes, lease renewals and the lease's release.
    let config = listener(&emulator, dir.path(), "").replace(
        r#"steps = [{ template = { text = "{token_id}: {text}" } }, "uppercase", { publish = { topic = "topic 2" } }]"#,
        r#"steps = ["uppercase"]"#,
    );
    let short_grace =
        config.replace("shutdown_grace = \"5s\"", "shutdown_grace = \"2s\"\nrequest_timeout = \"2s\"");
    assert!(config.contains(r#"steps = ["uppercase"]"#) && short_grace.contains("shutdown_grace = \"2s\""));
    let first = spawn_app_with(&short_grace).await;
    wait_for_subscriber(&emulator).await;
    publish_items(&emulator, 0, 5);
    let last = emulator.publish_as("chat", "topic 1", "item 5", "user-5");
    assert!(checkpoint_reaches(&first, last + 1).await, "the checkpoint moves past the six items");

    // Momento stops answering; one more item moves the checkpoint, whose write (local first,
    // then to the cache) now times out and is retried for longer than the grace.
    emulator.delay_next(1_000, Duration::from_secs(30));
    emulator.publish_as("chat", "topic 1", "item 6", "user-6");
    assert!(checkpoint_reaches(&first, last + 2).await, "the seventh item is done");
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.stop().await.unwrap();
    let calls_at_stop = emulator.calls().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after_stop: Vec<&str> = emulator.calls()[calls_at_stop..].iter().map(|call| call.method).collect();
    assert!(after_stop.is_empty(), "the stopped relay still called Momento: {after_stop:?}");

    // The next start resumes after the seven items, at the checkpoint written locally.
    emulator.heal();
    publish_items(&emulator, 7, 9);
    let second = spawn_app_with(&config).await;
    assert!(checkpoint_reaches(&second, last + 4).await, "{}", status(&second).await);
    assert_eq!(
        inbox_metric(&second, "topic_relay_subscription_items_total").await,
        2.0,
        "only the two new items ran"
    );
    second.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_that_break_as_soon_as_they_open_are_subscribed_to_ever_more_rarely() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(&slow_reconnects(listener(&emulator, dir.path(), ""), "50ms", "2s")).await;
    wait_for_subscriber(&emulator).await;

    // Momento takes each subscribe, then breaks the stream at once: the relay's own subscribe
    // succeeds every time, and only the stream's end can slow it down.
    emulator.break_new_streams();
    assert_eq!(emulator.cut_streams(), 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stream = status(&app).await["subscriptions"][0].clone();
    assert_eq!(stream["state"], "failing", "{stream}");
    // By now the waits are 1 to 2 s, each after at most 51 calls (the relay's and the SDK's
    // own); had they stayed at 25 to 50 ms, a thousand calls would fit in these 3 s.
    let calls = subscribe_calls_during(&emulator, Duration::from_secs(3)).await;
    assert!(calls <= 250, "{calls} subscribe calls in 3 s");

    heal_and_receive(&emulator).await;
    app.stop().await.unwrap();
}
