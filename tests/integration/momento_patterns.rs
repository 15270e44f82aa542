//! Both of Momento's patterns from the shipped example configs, through the real `momento`
//! SDK over gRPC to the in-process emulator.

use crate::support;

use std::time::Duration;

use serde_json::Value;
use support::emulator::{Emulator, test_api_key};
use support::on_emulator::{next_text, subscribe, wait_for_readiness};
use support::{SECRET, TestApp, event_at, spawn_settings};
use topic_relay::accept::now_ms;
use topic_relay::config::{ConfigSource, load_from_str};

const WAIT: Duration = Duration::from_secs(5);

/// Starts the relay on an example config, with Momento pointed at the emulator.
async fn spawn_example(file: &str, edit: impl Fn(String) -> String) -> (TestApp, Emulator) {
    let emulator = Emulator::start().await;
    let text = edit(std::fs::read_to_string(file).expect("example exists"));
    let key = test_api_key();
    let lookup = |name: &str| match name {
        "WEBHOOK_SECRET" => Some(SECRET.to_owned()),
        "MOMENTO_API_KEY" => Some(key.clone()),
        _ => None,
    };
    let overrides = [
        ("TOPIC_RELAY__SERVER__LISTEN", "127.0.0.1:0".to_owned()),
        ("TOPIC_RELAY__MOMENTO__ENDPOINT_OVERRIDE", emulator.endpoint()),
        ("TOPIC_RELAY__MOMENTO__TLS", "false".to_owned()),
        ("TOPIC_RELAY__MOMENTO__CALL_TIMEOUT", "300ms".to_owned()),
    ]
    .map(|(name, value)| (name.to_owned(), value));
    let settings =
        load_from_str(&text, ConfigSource::File(file.into()), &lookup, overrides).expect("valid").settings;
    let app = spawn_settings(settings).await;
    assert!(wait_for_readiness(&app, 200, WAIT).await, "the backend becomes ready");
    (app, emulator)
}

async fn post_as(app: &TestApp, topic: &str, text: &str, token_id: &str) -> (u16, Value) {
    let body = event_at("chat", topic, text, token_id, now_ms());
    let response = app.post("/webhook", body.clone(), Some(&app.sign(&body))).await;
    (response.status().as_u16(), response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn pattern_1_a_signed_event_reaches_a_real_subscriber_uppercased() {
    let (app, emulator) = spawn_example("config/examples/async-processing.toml", |text| text).await;
    let mut topic_2 = subscribe(&emulator, "chat", "topic 2").await;

    let (status, _) = post_as(&app, "topic 1", "hello from the webhook", "").await;

    assert_eq!(status, 200);
    assert_eq!(next_text(&mut topic_2, WAIT).await.as_deref(), Some("HELLO FROM THE WEBHOOK"));
    assert_eq!(emulator.published().len(), 1, "published once");
}

#[tokio::test]
async fn pattern_2_a_known_user_is_looked_up_published_enriched_and_kept_in_the_history() {
    let (app, emulator) = spawn_example("config/examples/identity.toml", |text| text).await;
    emulator.put("chat", "user:user-42", br#"{"name":"Ada","role":"teacher"}"#);
    let mut enriched = subscribe(&emulator, "chat", "enriched-room-1").await;

    let (status, _) = post_as(&app, "room-1", "hello class", "user-42").await;

    assert_eq!(status, 200);
    let published: Value =
        serde_json::from_str(&next_text(&mut enriched, WAIT).await.expect("published")).unwrap();
    assert_eq!(published["text"], "hello class");
    assert_eq!(published["user"]["name"], "Ada");
    assert_eq!(published["token_id"], "user-42");
    assert_eq!(published["topic"], "room-1");
    let history = emulator.list("chat", "history:room-1");
    assert_eq!(history.len(), 1);
    let kept: Value = serde_json::from_slice(&history[0]).unwrap();
    assert_eq!(kept["user"]["role"], "teacher");
    assert_eq!(emulator.ttl_ms("chat", "history:room-1"), Some(4 * 3600 * 1000));
}

#[tokio::test]
async fn pattern_2_an_unknown_token_id_is_rejected_and_nothing_is_published() {
    let (app, emulator) = spawn_example("config/examples/identity.toml", |text| text).await;

    let (status, answer) = post_as(&app, "room-1", "let me in", "user-999").await;

    assert_eq!((status, answer["error"].as_str()), (403, Some("rejected")));
    assert!(emulator.published().is_empty());
    assert!(emulator.list("chat", "history:room-1").is_empty());
}

#[tokio::test]
async fn pattern_2_an_unknown_token_id_is_dropped_when_the_config_says_so() {
    let (app, emulator) = spawn_example("config/examples/identity.toml", |text| {
        text.replace("on_miss = \"reject\"", "on_miss = \"drop\"")
    })
    .await;

    let (status, answer) = post_as(&app, "room-1", "let me in", "user-999").await;

    assert_eq!((status, answer["outcome"].as_str()), (200, Some("dropped")));
    assert!(emulator.published().is_empty());
}

#[tokio::test]
async fn pattern_2_an_anonymous_publisher_is_refused() {
    let (app, emulator) = spawn_example("config/examples/identity.toml", |text| text).await;
    emulator.put("chat", "user:", br#"{"name":"nobody"}"#);

    let (status, answer) = post_as(&app, "room-1", "anonymous hello", "").await;

    assert_eq!((status, answer["error"].as_str()), (403, Some("rejected")));
    assert_eq!(answer["detail"].as_str().map(|d| d.contains("sign in")), Some(true));
    assert!(emulator.published().is_empty());
}
