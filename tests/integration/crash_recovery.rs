//! The real binary, killed with SIGKILL while events sit in its spool, restarted: every
//! spooled event is delivered, none twice.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::binary::Relay;
use support::emulator::Emulator;
use support::on_emulator::momento_section;
use support::{SECRET, event};
use tonic::Code;
use topic_relay::verify::sign;

/// Posts a signed webhook event; the status code.
async fn post(relay: &Relay, client: &reqwest::Client, body: String) -> u16 {
    let signature = sign(SECRET.as_bytes(), body.as_bytes());
    let url = relay.url("/webhook");
    let response = client.post(url).header("momento-signature", signature).body(body).send().await.unwrap();
    response.status().as_u16()
}

/// Events in the relay's spool.
async fn spooled(relay: &Relay, client: &reqwest::Client) -> u64 {
    let url = relay.url("/v1/status");
    let status: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
    status["delivery"]["spooled"].as_u64().unwrap()
}

fn published_counts(emulator: &Emulator) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for published in emulator.published() {
        *counts.entry(published.text.unwrap_or_default()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn spooled_events_survive_sigkill_and_are_delivered_once_after_a_restart() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    let spool = dir.path().join("spool");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[webhooks.chat]\nsecrets = [\"{SECRET}\"]\n\n[delivery]\nspool_dir = \"{}\"\nretry_initial = \"200ms\"\nretry_max = \"500ms\"\n\n[[routes]]\nname = \"shout\"\nmatch = {{ cache = \"chat\", topic = \"topic 1\" }}\nsteps = [\"uppercase\", {{ publish = {{ topic = \"topic 2\" }} }}]\n{}",
            spool.display(),
            momento_section(&emulator)
        ),
    )
    .unwrap();
    let client = reqwest::Client::new();
    emulator.fail_all(Code::Unavailable);

    let first = Relay::start(&config);
    for n in 0..10 {
        assert_eq!(post(&first, &client, event("chat", "topic 1", &format!("survivor {n}"))).await, 202);
    }
    assert_eq!(spooled(&first, &client).await, 10);
    drop(first); // SIGKILL: no shutdown, no flush
    assert!(emulator.published().is_empty());

    emulator.heal();
    let second = Relay::start(&config);
    let deadline = Instant::now() + Duration::from_secs(20);
    while published_counts(&emulator).len() < 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = published_counts(&emulator);
    assert_eq!(counts.len(), 10, "{counts:?}");
    assert!(counts.values().all(|&times| times == 1), "{counts:?}");
    assert!(counts.contains_key("SURVIVOR 9"));
    assert_eq!(spooled(&second, &client).await, 0);
}
