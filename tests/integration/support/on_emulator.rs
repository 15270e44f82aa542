//! Running the relay on the Momento backend against the in-process emulator.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use momento::TopicClient;
use momento::topics::{Subscription, ValueKind};
use tokio_stream::StreamExt;

use super::emulator::{Emulator, test_api_key};
use super::{TestApp, spawn_app_with};

/// `[momento]` settings that point the relay at `emulator`, with short timeouts.
pub fn momento_section(emulator: &Emulator) -> String {
    format!(
        r#"
[momento]
backend = "momento"
api_key = "{key}"
endpoint_override = "{endpoint}"
tls = false
topic_clients = 4
call_timeout = "1s"
max_retries = 2
probe_cache = "chat"
"#,
        key = test_api_key(),
        endpoint = emulator.endpoint(),
    )
}

/// The `[momento]` settings of [`momento_section`], loaded.
pub fn momento_settings(emulator: &Emulator) -> topic_relay::config::MomentoSettings {
    let config = format!("[webhooks.chat]\nsecrets = [\"s\"]\n{}", momento_section(emulator));
    super::settings(&config).momento
}

/// The value of the series `name{subscription="inbox",topic="topic 1"}` on the relay's
/// `/metrics`.
pub async fn inbox_metric(app: &TestApp, name: &str) -> f64 {
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = format!("{name}{{subscription=\"inbox\",topic=\"topic 1\"}} ");
    let line = text.lines().find(|line| line.starts_with(&series));
    line.and_then(|line| line[series.len()..].parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Starts an emulator and a relay on it with the given webhook-and-routes config.
pub async fn spawn_on_emulator(config: &str) -> (TestApp, Emulator) {
    let emulator = Emulator::start().await;
    let app = spawn_app_with(&format!("{config}\n{}", momento_section(&emulator))).await;
    (app, emulator)
}

/// A real SDK subscriber on `cache`/`topic` of the emulator.
pub async fn subscribe(emulator: &Emulator, cache: &str, topic: &str) -> Subscription {
    let client = TopicClient::builder()
        .configuration(momento::topics::configurations::Laptop::latest())
        .credential_provider(emulator.credential_provider())
        .build()
        .expect("topic client builds");
    client.subscribe(cache, topic).await.expect("subscribes")
}

/// The next text message on a subscription, if one comes within `wait`.
pub async fn next_text(subscription: &mut Subscription, wait: Duration) -> Option<String> {
    match tokio::time::timeout(wait, subscription.next()).await.ok()??.kind {
        ValueKind::Text(text) => Some(text),
        ValueKind::Binary(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

/// Waits until `/readyz` answers `status`, for at most `wait`.
pub async fn wait_for_readiness(app: &TestApp, status: u16, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        let answer = app.client.get(app.url("/readyz")).send().await.expect("readyz answers");
        if answer.status() == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A relay that listens to `chat`/`topic 1` and republishes each item uppercased, with its
/// publisher's token_id, on `topic 2`.
pub fn listener(emulator: &Emulator, spool_dir: &Path, subscription_extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "5s"
drain_delay = "0s"

[delivery]
spool_dir = "{spool}"
retry_initial = "100ms"
retry_max = "200ms"

[subscriptions.inbox]
cache = "chat"
topics = ["topic 1"]
lease_ttl = "2s"
checkpoint_interval = "50ms"
reconnect_initial = "1ms"
reconnect_max = "4ms"
{subscription_extra}

[[routes]]
name = "shout"
match = {{ subscription = "inbox" }}
steps = [{{ template = {{ text = "{{token_id}}: {{text}}" }} }}, "uppercase", {{ publish = {{ topic = "topic 2" }} }}]
{momento}"#,
        spool = spool_dir.display(),
        momento = momento_section(emulator),
    )
}

/// How many times each text was republished on `topic 2`.
pub fn republished(emulator: &Emulator) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for published in emulator.published().into_iter().filter(|published| published.topic == "topic 2") {
        *counts.entry(published.text.unwrap_or_default()).or_insert(0) += 1;
    }
    counts
}

/// Waits up to `wait` for `done`; true when it came.
pub async fn eventually(wait: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}
