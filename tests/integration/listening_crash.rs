//! The real binary, listening to a topic on the emulator, killed with SIGKILL while items
//! flow: nothing published is lost, and what is processed twice is at most the tail done
//! since the last checkpoint.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::binary::Relay;
use support::emulator::Emulator;
use support::on_emulator::{eventually, listener, republished};
use tokio::time::Instant;

/// Publishes `item {n}` as `user-{n}` for each n in `range`, one every `every`.
async fn publish_paced(emulator: &Emulator, range: std::ops::Range<usize>, every: Duration) {
    for n in range {
        emulator.publish_as("chat", "topic 1", &format!("item {n}"), &format!("user-{n}"));
        tokio::time::sleep(every).await;
    }
}

fn expected(n: usize) -> String {
    format!("USER-{n}: ITEM {n}")
}

/// Whether `relay` owns `topic 1`, by its `/v1/status`.
async fn owns(client: &reqwest::Client, url: String) -> bool {
    let Ok(answer) = client.get(url).send().await else { return false };
    let status: serde_json::Value = answer.json().await.unwrap_or_default();
    status["subscriptions"][0]["owned"] == true
}

/// The listener configuration in a file, with checkpoints written every `checkpoint_interval`.
fn write_config(dir: &std::path::Path, emulator: &Emulator, checkpoint_interval: &str) -> std::path::PathBuf {
    let config = dir.join("relay.toml");
    let text = listener(emulator, &dir.join("spool"), "").replace(
        "checkpoint_interval = \"50ms\"",
        &format!("checkpoint_interval = \"{checkpoint_interval}\""),
    );
    std::fs::write(&config, text).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_sigkill_while_items_flow_nothing_is_lost_and_repeats_are_only_the_uncheckpointed_tail() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint_interval = Duration::from_millis(250);
    let config = write_config(dir.path(), &emulator, "250ms");
    let client = reqwest::Client::new();
    let first = Relay::start(&config);
    let owned = eventually(Duration::from_secs(20), || emulator.subscribers("chat", "topic 1") > 0).await;
    assert!(owned);

    let every = Duration::from_millis(2);
    let killed_at = {
        let publishing = publish_paced(&emulator, 0..400, every);
        let kill = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            first.kill();
            republished(&emulator).len()
        };
        let ((), done_before_kill) = tokio::join!(publishing, kill);
        done_before_kill
    };
    assert!(killed_at > 0, "items were being processed when the relay was killed");
    let second = Relay::start(&config);
    let all = eventually(Duration::from_secs(20), || republished(&emulator).len() >= 400).await;
    assert!(all, "{} of 400 processed", republished(&emulator).len());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let counts = republished(&emulator);
    let missing: Vec<usize> = (0..400).filter(|n| !counts.contains_key(&expected(*n))).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let repeated: BTreeMap<&String, &usize> = counts.iter().filter(|(_, times)| **times > 1).collect();
    assert!(repeated.values().all(|times| **times == 2), "{repeated:?}");
    // At most what was done since the last checkpoint write: one interval of items, plus
    // those in the queue at the kill, at the publishing pace (with slack for a busy machine).
    let tail_bound = (checkpoint_interval.as_millis() / every.as_millis()) as usize * 2;
    eprintln!(
        "SIGKILL after {killed_at} items processed: {} processed twice (bound {tail_bound})",
        repeated.len()
    );
    assert!(repeated.len() <= tail_bound, "{} repeats: {repeated:?}", repeated.len());
    assert!(owns(&client, second.url("/v1/status")).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_sent_sigterm_while_items_are_published_processes_each_exactly_once_after_a_restart() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &emulator, "1s");
    let first = Relay::start(&config);
    let subscribed =
        eventually(Duration::from_secs(20), || emulator.subscribers("chat", "topic 1") > 0).await;
    assert!(subscribed);
    let stop_and_restart = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let exited = tokio::task::spawn_blocking(move || first.terminate()).await.unwrap();
        assert!(exited, "the relay exits cleanly on SIGTERM");
        let config = config.clone();
        tokio::task::spawn_blocking(move || Relay::start(&config)).await.unwrap()
    };
    let ((), second) =
        tokio::join!(publish_paced(&emulator, 0..300, Duration::from_millis(2)), stop_and_restart);
    let all = eventually(Duration::from_secs(20), || republished(&emulator).len() >= 300).await;
    assert!(all, "{} of 300 processed", republished(&emulator).len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = republished(&emulator);
    let missing: Vec<usize> = (0..300).filter(|n| !counts.contains_key(&expected(*n))).collect();
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, times)| **times > 1).collect();
    assert!(missing.is_empty() && twice.is_empty(), "lost {missing:?}, twice {twice:?}");
    drop(second);
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_owner_is_killed_another_replica_takes_over_within_the_lease_and_loses_nothing() {
    let emulator = Emulator::start().await;
    let lease_ttl = Duration::from_secs(2);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let configs = dirs.each_ref().map(|dir| write_config(dir.path(), &emulator, "50ms"));
    let client = reqwest::Client::new();
    let first = Relay::start(&configs[0]);
    let subscribed =
        eventually(Duration::from_secs(20), || emulator.subscribers("chat", "topic 1") > 0).await;
    assert!(subscribed, "the first relay never subscribed");
    // A topic never checkpointed starts at the next item published, whoever owns it (see
    // `docs/src/reference/listening.md`): one item first, so that a hand-over to the second replica resumes.
    emulator.publish_as("chat", "topic 1", "warming up", "user-0");
    assert!(eventually(Duration::from_secs(10), || !republished(&emulator).is_empty()).await);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Either replica may be the topic's preferred owner: the first hands it over within a
    // lease TTL of seeing the second, so wait for them to agree, then kill the owner.
    let second = Relay::start(&configs[1]);
    let mut relays = [Some(first), Some(second)];
    tokio::time::sleep(2 * lease_ttl).await;
    let mut owners = Vec::new();
    for (n, relay) in relays.iter().enumerate() {
        if owns(&client, relay.as_ref().unwrap().url("/v1/status")).await {
            owners.push(n);
        }
    }
    assert_eq!(owners.len(), 1, "exactly one replica owns the topic: {owners:?}");
    let (owner, standby) = (relays[owners[0]].take().unwrap(), relays[1 - owners[0]].take().unwrap());

    publish_paced(&emulator, 0..50, Duration::from_millis(2)).await;
    assert!(eventually(Duration::from_secs(10), || republished(&emulator).len() >= 51).await);
    owner.kill();
    let killed = Instant::now();
    let publishing = publish_paced(&emulator, 50..150, Duration::from_millis(20));
    let takeover = async {
        while !owns(&client, standby.url("/v1/status")).await {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        killed.elapsed()
    };
    let ((), took) = tokio::join!(publishing, takeover);
    eprintln!("the standby owned the topic {took:?} after the owner's SIGKILL (lease_ttl {lease_ttl:?})");
    assert!(took <= lease_ttl + Duration::from_millis(1500), "took {took:?}");

    let all = eventually(Duration::from_secs(20), || republished(&emulator).len() >= 151).await;
    let counts = republished(&emulator);
    assert!(all, "{} of 150 processed", counts.len() - 1);
    let missing: Vec<usize> = (0..150).filter(|n| !counts.contains_key(&expected(*n))).collect();
    assert!(missing.is_empty(), "lost during the handover: {missing:?}");
    drop(standby);
}
