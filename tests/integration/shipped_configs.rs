//! The listening configurations the deploy kits ship (`config/deploy/listen.toml`, which the
//! CDK stack and Docker use, and the Kubernetes base's `config.toml`) carry items on the
//! Momento backend, as they are, with only where they run changed: the emulator's endpoint,
//! a loopback port and a spool of the test's own.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use support::emulator::Emulator;
use support::on_emulator::{eventually, momento_settings, republished};
use support::spawn_settings;
use topic_relay::config::{ConfigSource, Settings, load_from_str};

/// A syntactically valid v2 key and an endpoint, as the kits' environment gives them.
fn kit_environment(name: &str) -> Option<String> {
    match name {
        "MOMENTO_API_KEY" => Some(support::emulator::test_api_key()),
        "MOMENTO_ENDPOINT" => Some("cell-1.example.com".to_owned()),
        "TOPIC_RELAY_ADMIN_TOKEN" => Some("an-admin-token-of-our-own".to_owned()),
        _ => None,
    }
}

/// `path` loaded as the kit loads it, then pointed at `emulator` on loopback.
fn kit_settings(path: &str, emulator: &Emulator) -> Settings {
    let text = std::fs::read_to_string(path).unwrap();
    let source = ConfigSource::File(path.into());
    let mut settings = load_from_str(&text, source, &kit_environment, Vec::new())
        .unwrap_or_else(|error| panic!("{path}: {error}"))
        .settings;
    settings.momento = momento_settings(emulator);
    settings.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.server.ops_listen = None;
    settings.delivery.spool_dir = Settings::default().delivery.spool_dir;
    settings
}

async fn carries_an_item(path: &str) {
    let emulator = Emulator::start().await;
    let _app = spawn_settings(kit_settings(path, &emulator)).await;
    let subscribed =
        eventually(Duration::from_secs(20), || emulator.subscribers("chat", "topic 1") > 0).await;
    assert!(subscribed, "{path}: the relay subscribes to `topic 1`");
    emulator.publish_as("chat", "topic 1", "hello from the kit", "user-42");
    let arrived = eventually(Duration::from_secs(10), || !republished(&emulator).is_empty()).await;
    assert!(arrived, "{path}: nothing republished");
    assert_eq!(
        republished(&emulator).into_iter().collect::<Vec<_>>(),
        [("HELLO FROM THE KIT".to_owned(), 1)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_container_listening_config_carries_an_item() {
    carries_an_item("config/deploy/listen.toml").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubernetes_config_carries_an_item() {
    carries_an_item("deploy/kubernetes/config.toml").await;
}
