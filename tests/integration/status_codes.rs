//! Every row of the status table (`docs/src/reference/status-codes.md`), through real HTTP.

use crate::support;

use std::time::Duration;

use axum::body::Body;
use serde_json::Value;
use support::{SECRET, event, event_at, spawn_app_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use topic_relay::accept::now_ms;
use topic_relay::verify::sign;
use tower::ServiceExt;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 4096
request_timeout = "1s"

[webhooks.chat]
secrets = ["test-secret"]

[[routes]]
name = "shout"
match = { cache = "chat", topic = "topic 1" }
steps = ["uppercase", { publish = { topic = "topic 2" } }]

[[routes]]
name = "muted"
match = { topic = "muted" }
steps = [{ drop = { reason = "muted topic" } }]

[[routes]]
name = "outage"
match = { topic = "outage" }
steps = [{ fail = { with = "unavailable" } }]

[[routes]]
name = "denied"
match = { topic = "denied" }
steps = [{ fail = { with = "rejected" } }]

[[routes]]
name = "bad-key"
match = { topic = "bad-key" }
steps = [{ fail = { with = "unauthorized" } }]

[[routes]]
name = "broken"
match = { topic = "broken" }
steps = [{ fail = { with = "failed" } }]

[[routes]]
name = "slow"
match = { topic = "slow" }
steps = [{ sleep = { ms = 600 } }]
"#;

async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.expect("the answer is JSON");
    (status, body)
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("<no error field>")
}

#[tokio::test]
async fn a_verified_event_is_answered_200_with_its_outcome() {
    let app = spawn_app_with(CONFIG).await;
    let (status, body) = status_and_json(app.post_event("chat", "topic 1", "hi").await).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("processed")));
    let (status, body) = status_and_json(app.post_event("chat", "muted", "hi").await).await;
    assert_eq!(
        (status, body["outcome"].as_str(), body["reason"].as_str()),
        (200, Some("dropped"), Some("muted topic"))
    );
    let (status, body) = status_and_json(app.post_event("chat", "no route for this", "hi").await).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("unmatched")));
}

#[tokio::test]
async fn signature_problems_are_answered_401_and_reach_no_route() {
    let app = spawn_app_with(CONFIG).await;
    let body = event("chat", "topic 1", "hi");
    let wrong = sign(b"not-the-secret", body.as_bytes());
    let cases = [
        (None, "missing_signature"),
        (Some(""), "malformed_signature"),
        (Some("not hex at all"), "malformed_signature"),
        (Some(wrong.as_str()), "invalid_signature"),
    ];
    for (signature, code) in cases {
        let (status, answer) = status_and_json(app.post("/webhook", body.clone(), signature).await).await;
        assert_eq!((status, error_of(&answer)), (401, code), "signature {signature:?}");
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("topic_relay_route_events_total{route=\"shout\"} 0"), "{metrics}");
}

#[tokio::test]
async fn an_unknown_webhook_name_is_404() {
    let app = spawn_app_with(CONFIG).await;
    let body = event("chat", "topic 1", "hi");
    let signature = app.sign(&body);
    let (status, answer) =
        status_and_json(app.post("/webhooks/nope", body.clone(), Some(&signature)).await).await;
    assert_eq!((status, error_of(&answer)), (404, "unknown_webhook"));
    let (status, answer) =
        status_and_json(app.post("/webhooks/%FF", body.clone(), Some(&signature)).await).await;
    assert_eq!((status, error_of(&answer)), (404, "not_found"), "a name that is not UTF-8");
    let (status, _) = status_and_json(app.post("/webhooks/chat", body, Some(&signature)).await).await;
    assert_eq!(status, 200, "the named path works as well as the alias");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("topic_relay_refusals_total{error=\"unknown_webhook\"} 1\n"), "{metrics}");
}

#[tokio::test]
async fn the_unnamed_path_is_404_when_several_webhooks_are_configured() {
    let config = CONFIG.replace("[webhooks.chat]", "[webhooks.other]\nsecrets = [\"x\"]\n\n[webhooks.chat]");
    let app = spawn_app_with(&config).await;
    let (status, answer) = status_and_json(app.post_event("chat", "topic 1", "hi").await).await;
    assert_eq!((status, error_of(&answer)), (404, "no_default_webhook"));
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app_with(CONFIG).await;
    let body = event("chat", "topic 1", &"x".repeat(5000));
    let signature = app.sign(&body);
    let (status, answer) = status_and_json(app.post("/webhook", body, Some(&signature)).await).await;
    assert_eq!((status, error_of(&answer)), (413, "body_too_large"));
}

#[tokio::test]
async fn a_verified_body_that_is_not_an_event_is_400() {
    let app = spawn_app_with(CONFIG).await;
    for body in ["not json", r#"{"cache":"chat","topic":"topic 1"}"#, r#"{"text": 5}"#] {
        let signature = app.sign(body);
        let (status, answer) = status_and_json(app.post("/webhook", body, Some(&signature)).await).await;
        assert_eq!((status, error_of(&answer)), (400, "invalid_event"), "body {body}");
    }
}

#[tokio::test]
async fn stale_and_future_events_are_422() {
    let app = spawn_app_with(CONFIG).await;
    let cases = [(now_ms() - 61_000, "stale_event"), (now_ms() + 6_000, "future_event")];
    for (published, code) in cases {
        let body = event_at("chat", "topic 1", "hi", "", published);
        let signature = app.sign(&body);
        let (status, answer) = status_and_json(app.post("/webhook", body, Some(&signature)).await).await;
        assert_eq!((status, error_of(&answer)), (422, code));
    }
}

#[tokio::test]
async fn unmatched_events_are_404_when_the_policy_is_reject() {
    let app = spawn_app_with(&format!("{CONFIG}\n[unmatched]\naction = \"reject\"\n")).await;
    let (status, answer) = status_and_json(app.post_event("chat", "no route for this", "hi").await).await;
    assert_eq!((status, error_of(&answer)), (404, "no_route"));
}

#[tokio::test]
async fn backend_failures_are_spooled_or_dead_lettered_with_202() {
    let app = spawn_app_with(CONFIG).await;
    for (topic, outcome) in [("outage", "spooled"), ("bad-key", "dead_lettered")] {
        let (status, answer) = status_and_json(app.post_event("chat", topic, "hi").await).await;
        assert_eq!((status, answer["outcome"].as_str()), (202, Some(outcome)), "topic {topic}");
    }
}

#[tokio::test]
async fn a_spooled_event_that_later_fails_for_good_or_panics_becomes_a_dead_letter() {
    let config = format!(
        "{CONFIG}\n[delivery]\nretry_initial = \"50ms\"\n\n[admin]\ntoken = \"test-admin-token-0123456789\"\n\n\
         [[routes]]\nname = \"later-broken\"\nmatch = {{ topic = \"later-broken\" }}\nsteps = [{{ fail = {{ with = \"unavailable, then failed\" }} }}]\n\n\
         [[routes]]\nname = \"later-panics\"\nmatch = {{ topic = \"later-panics\" }}\nsteps = [{{ fail = {{ with = \"unavailable, then panic\" }} }}]\n"
    );
    let app = spawn_app_with(&config).await;
    for topic in ["later-broken", "later-panics"] {
        let (status, answer) = status_and_json(app.post_event("chat", topic, "hi").await).await;
        assert_eq!((status, answer["outcome"].as_str()), (202, Some("spooled")), "topic {topic}");
    }
    let mut reasons = Vec::new();
    for _ in 0..100 {
        let letters = app.admin_get("/v1/admin/dead-letters").await;
        reasons =
            letters["dead_letters"].as_array().unwrap().iter().map(|l| l["reason"].to_string()).collect();
        if reasons.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|reason| reason.contains("failed for good")), "{reasons:?}");
    assert!(reasons.iter().any(|reason| reason.contains("panicked")), "{reasons:?}");
}

#[tokio::test]
async fn a_replayed_request_is_409() {
    let app = spawn_app_with(CONFIG).await;
    let body = event("chat", "topic 1", "hi");
    let signature = app.sign(&body);
    assert_eq!(app.post("/webhook", body.clone(), Some(&signature)).await.status(), 200);
    let (status, answer) = status_and_json(app.post("/webhook", body, Some(&signature)).await).await;
    assert_eq!((status, error_of(&answer)), (409, "duplicate_event"));
}

#[tokio::test]
async fn a_full_spool_is_503() {
    let app = spawn_app_with(&format!(
        "{CONFIG}
[delivery]
max_spooled_events = 1
"
    ))
    .await;
    assert_eq!(app.post_event("chat", "outage", "kept").await.status(), 202);
    let (status, answer) = status_and_json(app.post_event("chat", "outage", "refused").await).await;
    assert_eq!((status, error_of(&answer)), (503, "spool_full"));
}

#[tokio::test]
async fn step_failures_map_to_403_422_502_and_503_without_a_spool() {
    let app = spawn_app_with(&format!(
        "{CONFIG}
[delivery]
mode = \"off\"
"
    ))
    .await;
    let cases = [
        ("denied", 403, "rejected"),
        ("broken", 422, "processing_failed"),
        ("bad-key", 502, "backend_error"),
        ("outage", 503, "backend_unavailable"),
    ];
    for (topic, expected_status, code) in cases {
        let response = app.post_event("chat", topic, "hi").await;
        let retry_after = response.headers().get("retry-after").is_some();
        let (status, answer) = status_and_json(response).await;
        assert_eq!((status, error_of(&answer)), (expected_status, code), "topic {topic}");
        assert_eq!(retry_after, status == 503, "Retry-After comes with 503 only");
        assert!(!answer["detail"].as_str().unwrap().contains("test key"), "backend detail stays in the log");
    }
}

#[tokio::test]
async fn past_the_in_flight_limit_requests_are_503_overloaded_with_retry_after() {
    let app = spawn_app_with(
        &CONFIG.replace("request_timeout = \"1s\"", "request_timeout = \"1s\"\nmax_in_flight = 1"),
    )
    .await;
    let slow = app.post_event("chat", "slow", "hi");
    let second = async {
        app.wait_for_in_flight(1).await;
        app.post_event("chat", "topic 1", "hi").await
    };
    let (slow, second) = tokio::join!(slow, second);
    assert!(slow.status().is_success(), "{}", slow.status());
    assert_eq!(second.headers()["retry-after"], "1");
    let (status, answer) = status_and_json(second).await;
    assert_eq!((status, error_of(&answer)), (503, "overloaded"));
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("topic_relay_refusals_total{error=\"overloaded\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_request_that_outlives_the_request_timeout_is_503_timeout() {
    let app =
        spawn_app_with(&CONFIG.replace("request_timeout = \"1s\"", "request_timeout = \"300ms\"")).await;
    let body = event("chat", "topic 1", "hi");
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nmomento-signature: {}\r\ncontent-length: {}\r\n\r\n",
        sign(SECRET.as_bytes(), body.as_bytes()),
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&body.as_bytes()[..10]).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(3), socket.read_to_string(&mut answer)).await.ok();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"error\":\"timeout\""), "{answer}");
}

#[tokio::test]
async fn an_event_that_needs_a_spool_that_cannot_be_written_is_503() {
    let spool = tempfile::tempdir().unwrap();
    let mut settings = support::settings(CONFIG);
    settings.delivery.spool_dir = spool.path().to_owned();
    let app = topic_relay::startup::App::build_with(settings, support::test_registry()).await.unwrap();
    app.spool().expect("a spool").close().await.unwrap();
    let body = event("chat", "outage", "nowhere to keep it");
    let request = axum::http::Request::post("/webhook")
        .header("momento-signature", sign(SECRET.as_bytes(), body.as_bytes()))
        .body(Body::from(body))
        .unwrap();
    let response = app.service().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 503);
    let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("spool_unavailable"));
}

#[tokio::test]
async fn a_body_that_cannot_be_read_is_400_unreadable_body() {
    let spool = tempfile::tempdir().unwrap();
    let mut settings = support::settings(CONFIG);
    settings.delivery.spool_dir = spool.path().to_owned();
    let app = topic_relay::startup::App::build_with(settings, support::test_registry()).await.unwrap();
    let broken = futures::stream::iter([Err::<bytes::Bytes, _>(std::io::Error::other("connection reset"))]);
    let request = axum::http::Request::post("/webhook")
        .header("momento-signature", "00".repeat(32))
        .body(Body::from_stream(broken))
        .unwrap();
    let response = app.service().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 400);
    let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("unreadable_body"));
}

#[tokio::test]
async fn a_step_that_panics_makes_a_dead_letter_or_without_a_spool_a_500() {
    let config = format!(
        "{CONFIG}\n[[routes]]\nname = \"panics\"\nmatch = {{ topic = \"panics\" }}\nsteps = [{{ fail = {{ with = \"panic\" }} }}]\n"
    );
    let app = spawn_app_with(&config).await;
    let (status, answer) = status_and_json(app.post_event("chat", "panics", "boom").await).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (202, Some("dead_lettered")),
        "kept for a fix and a replay"
    );

    let without_spool = spawn_app_with(&format!("{config}\n[delivery]\nmode = \"off\"\n")).await;
    let (status, answer) = status_and_json(without_spool.post_event("chat", "panics", "boom").await).await;
    assert_eq!((status, error_of(&answer)), (500, "internal_error"));
    assert_eq!(without_spool.post_event("chat", "topic 1", "still here").await.status(), 200);
    let metrics =
        without_spool.client.get(without_spool.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("topic_relay_refusals_total{error=\"internal_error\"} 1\n"), "{metrics}");
}

#[tokio::test]
async fn a_known_path_with_the_wrong_method_is_405_in_json() {
    let app = spawn_app_with(CONFIG).await;
    for path in ["/webhook", "/webhooks/chat"] {
        let (status, answer) = status_and_json(app.client.get(app.url(path)).send().await.unwrap()).await;
        assert_eq!((status, error_of(&answer)), (405, "method_not_allowed"), "GET {path}");
    }
}

#[tokio::test]
async fn an_unknown_path_is_404_not_found_in_json() {
    let app = spawn_app_with(CONFIG).await;
    let response = app.client.get(app.url("/nope")).send().await.unwrap();
    let (status, answer) = status_and_json(response).await;
    assert_eq!((status, error_of(&answer)), (404, "not_found"));
}
