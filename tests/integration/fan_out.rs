//! Fan-out through the real `momento` SDK against the emulator: one event, one branch per
//! language; a branch whose publish fails resumes alone, and every topic gets its message
//! exactly once.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::emulator::Emulator;
use support::on_emulator::{momento_section, wait_for_readiness};
use support::{TestApp, delivery_preamble, settings, spawn_settings};
use tonic::Code;

async fn start(emulator: &Emulator, delivery: &str) -> TestApp {
    let config = format!(
        r#"{preamble}
[[routes]]
name = "languages"
match = {{ cache = "chat", topic = "room" }}
steps = [
  {{ publish = {{ topic = "all" }} }},
  {{ publish = {{ topic = "chat-{{item}}", for_each = ["en", "es", "fr"] }} }},
  {{ publish = {{ topic = "seen-{{item}}" }} }},
]
{momento}"#,
        preamble = delivery_preamble("300ms", "300ms", delivery),
        // No retries inside the SDK, so each failure the emulator makes is the relay's to handle.
        momento = momento_section(emulator).replace("max_retries = 2", "max_retries = 0")
    );
    let app = spawn_settings(settings(&config)).await;
    assert!(wait_for_readiness(&app, 200, Duration::from_secs(5)).await);
    app
}

fn published(emulator: &Emulator) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for published in emulator.published() {
        *counts.entry(published.topic).or_insert(0) += 1;
    }
    counts
}

async fn pending(app: &TestApp) -> Vec<Value> {
    app.admin_get("/v1/admin/spool").await["events"].as_array().unwrap().clone()
}

async fn one_branch_fails_twice_then_heals(delivery: &str) {
    let emulator = Emulator::start().await;
    let app = start(&emulator, delivery).await;
    emulator.fail_publishes_to("chat-es", 2, Code::Unavailable);

    let response = app.post_event("chat", "room", "hello").await;

    assert_eq!(response.status(), 202, "the failed branch is kept");
    let kept = pending(&app).await;
    assert_eq!(kept.len(), 1, "only the failed branch is kept: {kept:?}");
    assert_eq!(kept[0]["branch"], serde_json::json!([1]));
    assert_eq!(kept[0]["next_step"], 2, "it resumes at its failed publish");
    assert_eq!(kept[0]["message"]["attached"]["item"], "es");

    let expected: BTreeMap<String, usize> =
        ["all", "chat-en", "chat-es", "chat-fr", "seen-en", "seen-es", "seen-fr"]
            .into_iter()
            .map(|topic| (topic.to_owned(), 1))
            .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while published(&emulator) != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(published(&emulator), expected);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(published(&emulator), expected, "nothing is published twice");
    assert!(pending(&app).await.is_empty());
}

#[tokio::test]
async fn inline_a_failed_branch_resumes_alone_and_every_topic_gets_one_message() {
    one_branch_fails_twice_then_heals("").await;
}

#[tokio::test]
async fn written_ahead_a_failed_branch_resumes_alone_and_every_topic_gets_one_message() {
    one_branch_fails_twice_then_heals(r#"mode = "spool""#).await;
}

#[tokio::test]
async fn a_fan_out_past_max_branches_is_refused_before_any_branch_runs() {
    let emulator = Emulator::start().await;
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[webhooks.chat]
secrets = ["test-secret"]

[[routes]]
name = "wide"
match = {{ cache = "chat", topic = "room" }}
max_branches = 2
steps = [{{ publish = {{ topic = "chat-{{item}}", for_each = ["en", "es", "fr"] }} }}]
{momento}"#,
        momento = momento_section(&emulator)
    );
    let app = spawn_settings(settings(&config)).await;
    assert!(wait_for_readiness(&app, 200, Duration::from_secs(5)).await);

    let response = app.post_event("chat", "room", "hello").await;

    assert_eq!(response.status(), 422);
    assert!(emulator.published().is_empty());
}
