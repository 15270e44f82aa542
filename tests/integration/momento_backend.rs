//! The Momento backend's behaviour under faults, its client pool and its readiness, through
//! the real `momento` SDK against the in-process emulator.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::emulator::Emulator;
use support::on_emulator::{momento_section, spawn_on_emulator, wait_for_readiness};
use support::{SEED_CONFIG, settings, spawn_app_with};
use tonic::Code;
use topic_relay::startup::App;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn two_failed_publishes_are_retried_into_one_publish_and_a_200() {
    let (app, emulator) = spawn_on_emulator(SEED_CONFIG).await;
    assert!(wait_for_readiness(&app, 200, WAIT).await);
    emulator.fail_next(2, Code::Unavailable);

    let response = app.post_event("chat", "topic 1", "third time lucky").await;

    assert_eq!(response.status(), 200);
    assert_eq!(emulator.publish_attempts(), 3);
    let published = emulator.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].text.as_deref(), Some("THIRD TIME LUCKY"));
}

#[tokio::test]
async fn a_malformed_api_key_stops_startup_without_printing_the_key() {
    let emulator = Emulator::start().await;
    let config = format!("{SEED_CONFIG}\n{}", momento_section(&emulator))
        .replace(&support::emulator::test_api_key(), "my-leaked-key-123");
    let error = match App::build(settings(&config)).await {
        Ok(_) => panic!("a malformed key must stop startup"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("momento.api_key"), "{error}");
    assert!(!error.contains("my-leaked-key-123"), "{error}");
}

async fn distinct_publishing_connections(topic_clients: usize) -> (usize, String) {
    let emulator = Emulator::start().await;
    let config = format!("{SEED_CONFIG}\n{}", momento_section(&emulator))
        .replace("topic_clients = 4", &format!("topic_clients = {topic_clients}"));
    let app = spawn_app_with(&config).await;
    assert!(wait_for_readiness(&app, 200, WAIT).await);
    for n in 0..16 {
        assert_eq!(app.post_event("chat", "topic 1", &format!("message {n}")).await.status(), 200);
    }
    let peers: BTreeSet<_> = emulator.published().iter().map(|published| published.peer).collect();
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    (peers.len(), metrics)
}

#[tokio::test]
async fn the_topic_client_pool_spreads_publishes_over_every_client() {
    // Each TopicClient rotates over 4 connections of its own, so one client shows at most 4
    // distinct connections and a pool of 4 shows up to 16.
    let (single, _) = distinct_publishing_connections(1).await;
    let (pooled, metrics) = distinct_publishing_connections(4).await;

    assert_eq!(single, 4);
    assert_eq!(pooled, 16);
    for client in 0..4 {
        let line = format!("topic_relay_momento_publishes_total{{client=\"{client}\"}} 4");
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }
}

async fn metrics_text(app: &support::TestApp) -> String {
    app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn readyz_waits_for_the_backend_and_reports_sustained_failures() {
    let emulator = Emulator::start().await;
    emulator.fail_all(Code::Unavailable);
    let app = spawn_app_with(&format!("{SEED_CONFIG}\n{}", momento_section(&emulator))).await;

    let not_ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(not_ready.status(), 503);
    let body: serde_json::Value = not_ready.json().await.unwrap();
    assert_eq!(body["status"], "backend_not_ready");
    assert!(metrics_text(&app).await.contains("\ntopic_relay_ready 0\n"));

    emulator.heal();
    assert!(wait_for_readiness(&app, 200, WAIT).await, "ready once the probe succeeds");
    assert!(metrics_text(&app).await.contains("\ntopic_relay_ready 1\n"), "readiness is exported for alerts");

    emulator.fail_all(Code::Unavailable);
    for _ in 0..2 {
        app.post_event("chat", "topic 1", "into the void").await;
    }
    assert!(wait_for_readiness(&app, 503, WAIT).await, "not ready after sustained failures");
}

#[tokio::test]
async fn the_subscribe_stream_is_not_served_on_the_momento_backend() {
    let (app, _emulator) = spawn_on_emulator(SEED_CONFIG).await;
    let response = app.client.get(app.url("/v1/subscribe/chat/topic%202")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}
