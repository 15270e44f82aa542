//! Running the relay on the Momento backend against the in-process emulator.

use std::time::Duration;

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
