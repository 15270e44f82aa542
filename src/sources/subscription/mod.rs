//! The subscription source: the relay listens to topics itself, as Momento now advises for
//! processing Topics outside Lambda. Each `[subscriptions.<name>]` holds one stream per topic;
//! each item becomes a message with the publisher's `token_id`, and goes through the same
//! routes, pipeline, spool and dead letters as a webhook event.
//!
//! - `listening`: every stream and membership keeper, started, changed by a reload, stopped.
//! - `stream`: one topic's stream, from owning it to shutting it down.
//! - `progress`: which items are done, and so where to resume.
//! - `checkpoint`: where each stream resumes, kept locally and in the cache.
//! - `intake`: what a stream makes of each event it reads.
//! - `worker`: what runs each item taken.
//! - `lease`: one owner per topic across replicas, and keeping it while listening.
//! - `membership`: which replicas share the topics, and which one each topic prefers.

mod checkpoint;
mod intake;
mod lease;
mod listening;
mod membership;
mod metrics;
mod progress;
mod report;
mod stream;
mod worker;

use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use listening::{ListenerReports, Listeners, Listening, TopicChanges};
pub use metrics::{StreamMetrics, SubscriptionMetrics};
pub use report::{StreamReport, StreamState};

use crate::backend::{ItemValue, TopicItem};
use crate::common::duration;
use crate::common::now_ms;
use crate::event::Message;
use checkpoint::CheckpointKey;
pub use membership::{Membership, Preference, SLOTS, assign};

/// `[subscriptions.<name>]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSettings {
    /// The cache whose topics are listened to.
    pub cache: String,
    /// The topics, one stream each.
    pub topics: Vec<String>,
    /// Which replicas listen to each topic.
    #[serde(default)]
    pub owner: Ownership,
    /// How long a replica's hold on a topic lasts without renewal; another replica takes
    /// over within about this long after the owner dies.
    #[serde(default = "default_lease_ttl", with = "duration")]
    pub lease_ttl: Duration,
    /// Items each topic holds in memory while earlier ones run; past it, items go straight
    /// to the spool.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Items of one topic processed at once. 1 (the default) keeps them in order; more
    /// carries more items a second, and their effects (republishes, list pushes) may then
    /// land out of order.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How often each topic's checkpoint is written, when it moved.
    #[serde(default = "default_checkpoint_interval", with = "duration")]
    pub checkpoint_interval: Duration,
    /// The wait before subscribing again after a failed attempt; it doubles, with jitter.
    #[serde(default = "default_reconnect_initial", with = "duration")]
    pub reconnect_initial: Duration,
    /// The longest wait between attempts to subscribe.
    #[serde(default = "default_reconnect_max", with = "duration")]
    pub reconnect_max: Duration,
    /// A stream that brings neither an item nor a heartbeat for this long is counted as
    /// stalled and opened again. Momento promises no heartbeat cadence, so keep it generous.
    #[serde(default = "default_stall_after", with = "duration")]
    pub stall_after: Duration,
    /// Whether a topic of this subscription that fails turns `/readyz` to 503. Without it, a
    /// failing topic shows only in `/v1/status`, the metrics and the log, and the replica
    /// keeps taking webhook calls.
    #[serde(default = "default_affects_readiness")]
    pub affects_readiness: bool,
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}
fn default_queue() -> usize {
    1000
}
fn default_concurrency() -> usize {
    1
}
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_reconnect_initial() -> Duration {
    Duration::from_millis(500)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}
fn default_stall_after() -> Duration {
    Duration::from_secs(60)
}
fn default_affects_readiness() -> bool {
    true
}

/// Which replicas listen to a topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ownership {
    /// One replica at a time, the holder of the topic's lease in Momento Cache.
    #[default]
    Lease,
    /// Every replica takes every item (each processes all).
    EveryReplica,
}

/// A topic item as the message the pipeline knows. Text that came as bytes is taken as it
/// is when it is UTF-8; other bytes become base64 text, with `encoding = "base64"` attached.
fn item_message(key: &CheckpointKey, item: TopicItem, metrics: &StreamMetrics) -> Message {
    let (text, base64) = match item.value {
        ItemValue::Text(text) => (text, false),
        ItemValue::Binary(bytes) => {
            metrics.binary.inc();
            match String::from_utf8(bytes) {
                Ok(text) => (text, false),
                Err(error) => (base64::engine::general_purpose::STANDARD.encode(error.into_bytes()), true),
            }
        }
    };
    let received = now_ms();
    let mut message = Message::new(&key.cache, &key.topic, &text);
    message.token_id = item.publisher_id;
    message.topic_sequence_number = item.position.sequence;
    message.sequence_page = item.position.page;
    (message.event_timestamp, message.publish_timestamp) = (received, received);
    if base64 {
        message.attached.insert("encoding".into(), Value::from("base64"));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Position;

    fn key() -> CheckpointKey {
        CheckpointKey { cache: "chat".into(), subscription: "inbox".into(), topic: "topic 1".into() }
    }

    fn item(value: ItemValue) -> TopicItem {
        TopicItem { position: Position { page: 3, sequence: 7 }, publisher_id: "user-42".into(), value }
    }

    #[test]
    fn an_item_becomes_a_message_with_its_publishers_token_id_and_place() {
        let message = item_message(
            &key(),
            item(ItemValue::Text("hi".into())),
            &SubscriptionMetrics::default().stream("inbox", "topic 1"),
        );
        assert_eq!((message.token_id.as_str(), message.text.as_str()), ("user-42", "hi"));
        assert_eq!((message.topic_sequence_number, message.sequence_page), (7, 3));
        assert_eq!((message.cache.as_str(), message.topic.as_str()), ("chat", "topic 1"));
    }

    #[test]
    fn binary_items_are_kept_as_text_or_base64_never_dropped() {
        let metrics = SubscriptionMetrics::default().stream("inbox", "topic 1");
        let utf8 = item_message(&key(), item(ItemValue::Binary(b"plain".to_vec())), &metrics);
        assert_eq!(utf8.text, "plain");
        assert!(utf8.attached.is_empty());
        let raw = item_message(&key(), item(ItemValue::Binary(vec![0xff, 0x00, 0x80])), &metrics);
        assert_eq!(raw.text, "/wCA");
        assert_eq!(raw.attached["encoding"], "base64");
        assert_eq!(metrics.binary.get(), 2);
    }
}
