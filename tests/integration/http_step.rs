//! The `http` step against a local service: what continues, what is retried through the
//! spool (honouring `Retry-After`), what becomes a dead letter, and the Standard Webhooks
//! signature, checked by the reference library.

use crate::support;

use std::time::Duration;

use serde_json::Value;
use support::on_emulator::eventually;
use support::service::{FakeService, Reply};
use support::{TestApp, delivery_preamble, event_at, spawn_app_with};
use topic_relay::accept::now_ms;

const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A relay whose `calls` route sends each event's text to `service` with `options`, then
/// publishes the text (or `publish_text`) on `done`.
async fn relay(service: &FakeService, options: &str, publish_text: &str) -> TestApp {
    relay_calling(&format!("{}/hook?key=query-secret", service.url), options, publish_text).await
}

/// The same relay, calling `url`.
async fn relay_calling(url: &str, options: &str, publish_text: &str) -> TestApp {
    spawn_app_with(&format!(
        r#"{preamble}
[[routes]]
name = "calls"
match = {{ cache = "chat", topic = "in" }}
steps = [
  {{ http = {{ url = "{url}", {options} }} }},
  {{ template = {{ text = "{publish_text}" }} }},
  {{ publish = {{ topic = "done" }} }},
]

[http_steps]
allowed_destinations = ["127.0.0.1"]
"#,
        preamble = delivery_preamble("100ms", "200ms", ""),
    ))
    .await
}

/// Posts a signed event on `chat`/`in` published by `token_id`.
async fn post_as(app: &TestApp, token_id: &str, text: &str) -> reqwest::Response {
    let body = event_at("chat", "in", text, token_id, now_ms());
    let signature = app.sign(&body);
    app.post("/webhook", body, Some(&signature)).await
}

#[tokio::test]
async fn a_200_continues_and_into_attaches_the_reply_for_later_templates() {
    let service = FakeService::start(Reply::new(200, r#"{"translatedText":"hola"}"#)).await;
    let app = relay(
        &service,
        r#"body = { q = "{text}", target = "es" }, into = "translation""#,
        "{translation.translatedText}",
    )
    .await;
    let mut done = app.subscribe("chat", "done").await;

    let response = app.post_event("chat", "in", "hello \"you\"").await;

    assert_eq!(response.status(), 200);
    assert_eq!(done.next_message(Duration::from_secs(5)).await.as_deref(), Some("hola"));
    let received = service.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].headers["content-type"], "application/json");
    let sent: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(sent, serde_json::json!({"q": "hello \"you\"", "target": "es"}));
}

#[tokio::test]
async fn a_503_then_a_200_is_delivered_once_through_the_spool_after_retry_after() {
    let service = FakeService::start(Reply::new(200, "")).await;
    service.queue([Reply::new(503, "busy").header("retry-after", "1")]);
    let app = relay(&service, r#"body = "text""#, "{text}").await;
    let mut done = app.subscribe("chat", "done").await;

    let response = app.post_event("chat", "in", "hello").await;

    assert_eq!(response.status(), 202, "kept for a retry");
    assert_eq!(done.next_message(Duration::from_secs(5)).await.as_deref(), Some("hello"));
    assert_eq!(done.next_message(Duration::from_millis(500)).await, None, "published once");
    let received = service.received();
    assert_eq!(received.len(), 2);
    let waited = received[1].at - received[0].at;
    // retry_initial is 100ms; only Retry-After makes it wait a second.
    assert!(waited >= Duration::from_millis(950), "retried after {waited:?}");
    assert_eq!(app.admin_get("/v1/admin/spool").await["events"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_400_becomes_a_dead_letter_naming_the_status_with_secrets_scrubbed() {
    let service = FakeService::start(Reply::new(400, "bad key sk-header-secret")).await;
    let options = r#"headers = { Authorization = "Bearer sk-header-secret" }"#;
    let app = relay(&service, options, "{text}").await;

    let response = app.post_event("chat", "in", "hello").await;

    assert_eq!(response.status(), 202);
    let letters = app.admin_get("/v1/admin/dead-letters").await;
    let letters = letters["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let shown = letters[0].to_string();
    assert!(shown.contains("400 Bad Request"), "{shown}");
    assert!(shown.contains("bad key <redacted>"), "{shown}");
    assert!(!shown.contains("sk-header-secret") && !shown.contains("query-secret"), "{shown}");
    assert_eq!(service.received().len(), 1, "a permanent failure is not retried");
}

#[tokio::test]
async fn a_timeout_is_retried_and_delivered_once() {
    let service = FakeService::start(Reply::new(200, "")).await;
    service.queue([Reply::new(200, "").after(Duration::from_millis(800))]);
    let app = relay(&service, r#"timeout = "200ms""#, "{text}").await;
    let mut done = app.subscribe("chat", "done").await;

    let response = app.post_event("chat", "in", "slow").await;

    assert_eq!(response.status(), 202);
    assert_eq!(done.next_message(Duration::from_secs(5)).await.as_deref(), Some("slow"));
    assert_eq!(done.next_message(Duration::from_millis(500)).await, None);
    assert!(eventually(Duration::from_secs(2), || service.received().len() == 2).await);
}

#[tokio::test]
async fn signed_requests_verify_with_the_standard_webhooks_reference_library() {
    let service = FakeService::start(Reply::new(204, "")).await;
    let options = format!(r#"body = "json", sign = {{ secret = "{SIGNING_SECRET}" }}"#);
    let app = relay(&service, &options, "{text}").await;

    assert_eq!(app.post_event("chat", "in", "signed").await.status(), 200);
    assert_eq!(app.post_event("chat", "in", "signed too").await.status(), 200);

    let received = service.received();
    assert_eq!(received.len(), 2);
    let verifier = standardwebhooks::Webhook::new(SIGNING_SECRET).unwrap();
    for request in &received {
        verifier.verify(&request.body, &request.headers).expect("the signature verifies");
        let mut tampered = request.body.to_vec();
        tampered[0] = b' ';
        assert!(verifier.verify(&tampered, &request.headers).is_err());
    }
    assert_ne!(received[0].headers["webhook-id"], received[1].headers["webhook-id"]);
}

#[tokio::test]
async fn a_token_id_cannot_add_path_segments_or_a_query_to_the_url() {
    let service = FakeService::start(Reply::new(204, "")).await;
    let url = format!("{}/users/{{token_id}}/profile?room={{topic}}", service.url);
    let app = relay_calling(&url, r#"method = "GET", body = "none""#, "{text}").await;

    let attack = post_as(&app, "../../admin/delete-all?confirm=yes#", "hello").await;
    let dots = post_as(&app, "..", "hello").await;

    assert_eq!(attack.status(), 200);
    assert_eq!(dots.status(), 422, "a value that would resolve as `..` is refused, not sent");
    let received = service.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        received[0].uri.to_string(),
        "/users/..%2F..%2Fadmin%2Fdelete-all%3Fconfirm%3Dyes%23/profile?room=in"
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_becomes_a_dead_letter_naming_it() {
    let elsewhere = FakeService::start(Reply::new(200, "")).await;
    let location = format!("{}/collect", elsewhere.url);
    let service = FakeService::start(Reply::new(302, "").header("location", &location)).await;
    let options = r#"headers = { Authorization = "Bearer sk-header-secret" }"#;
    let app = relay(&service, options, "{text}").await;

    let response = app.post_event("chat", "in", "private words").await;

    assert_eq!(response.status(), 202);
    assert_eq!(service.received().len(), 1);
    assert!(elsewhere.received().is_empty(), "neither the credentials nor the message went on");
    let letters = app.admin_get("/v1/admin/dead-letters").await;
    assert!(letters["dead_letters"][0].to_string().contains("302 Found"), "{letters}");
}
