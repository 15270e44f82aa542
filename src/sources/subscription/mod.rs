//! The subscription source: the relay listens to topics itself, as Momento now advises for
//! processing Topics outside Lambda. Each `[subscriptions.<name>]` holds one stream per topic;
//! each item becomes a message with the publisher's `token_id`, and goes through the same
//! routes, pipeline, spool and dead letters as a webhook event.
//!
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
mod membership;
mod metrics;
mod progress;
mod report;
mod stream;
mod worker;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use metrics::{StreamMetrics, SubscriptionMetrics};
pub use report::{StreamReport, StreamState};

use super::Source;
use crate::backend::{Backend, ItemValue, TopicItem};
use crate::common::duration;
use crate::common::now_ms;
use crate::event::Message;
use crate::relay::Relay;
use checkpoint::{CheckpointKey, Checkpoints};
pub use membership::{Membership, Preference, SLOTS, assign};
use stream::TopicStream;

/// `[subscriptions.<name>]`
#[derive(Debug, Clone, Deserialize, Serialize)]
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

/// The relay's subscription streams: built with the app, started with the server.
pub struct Listeners {
    streams: Vec<TopicStream>,
    /// Each leased subscription's membership keeper, started with the streams.
    keepers: Vec<membership::Keeper>,
}

/// What the streams report, for `/v1/status` and `/readyz`.
#[derive(Clone, Default)]
pub struct ListenerReports(Arc<Vec<ReportedStream>>);

/// One stream's live report, and whether its failure counts against readiness.
struct ReportedStream {
    report: Arc<Mutex<StreamReport>>,
    affects_readiness: bool,
}

impl ReportedStream {
    fn current(&self) -> std::sync::MutexGuard<'_, StreamReport> {
        self.report.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The running streams.
pub struct Listening {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// One stream per topic of every subscription. Checkpoints are kept in `checkpoint_dir`
    /// and in each subscription's cache; leases hold `replica`. Items over `max_item_bytes`
    /// are refused.
    pub fn new(
        subscriptions: &BTreeMap<String, SubscriptionSettings>,
        backend: Arc<dyn Backend>,
        relay: Arc<Relay>,
        checkpoint_dir: &Path,
        metrics: &SubscriptionMetrics,
        replica: &str,
        max_item_bytes: usize,
    ) -> anyhow::Result<Self> {
        let checkpoints = Checkpoints::open(checkpoint_dir, backend.clone())?;
        let mut streams = Vec::new();
        let mut keepers = Vec::new();
        for (name, subscription) in subscriptions {
            let settings = Arc::new(subscription.clone());
            let membership = match subscription.owner {
                Ownership::Lease => {
                    let (membership, keeper) = Membership::new(
                        backend.clone(),
                        &subscription.cache,
                        name,
                        &subscription.topics,
                        replica,
                        subscription.lease_ttl,
                    );
                    keepers.push(keeper);
                    membership
                }
                Ownership::EveryReplica => Membership::alone(replica),
            };
            for topic in &subscription.topics {
                let report = Arc::new(Mutex::new(StreamReport {
                    subscription: name.clone(),
                    topic: topic.clone(),
                    state: StreamState::Starting,
                    owned: false,
                    resume_at: None,
                    last_error: None,
                    failed_attempts: 0,
                    last_heartbeat_ms: None,
                    stalls: 0,
                    discontinuities: 0,
                    items_skipped: 0,
                    page_changes: 0,
                }));
                streams.push(TopicStream {
                    source: Source::Subscription(name.as_str().into()),
                    settings: settings.clone(),
                    key: CheckpointKey {
                        cache: subscription.cache.clone(),
                        subscription: name.clone(),
                        topic: topic.clone(),
                    },
                    backend: backend.clone(),
                    relay: relay.clone(),
                    checkpoints: checkpoints.clone(),
                    metrics: metrics.stream(name, topic),
                    report,
                    replica: replica.to_owned(),
                    membership: membership.clone(),
                    max_item_bytes,
                });
            }
        }
        Ok(Listeners { streams, keepers })
    }

    /// What the streams report, live.
    pub fn reports(&self) -> ListenerReports {
        let streams = self.streams.iter().map(|stream| ReportedStream {
            report: stream.report.clone(),
            affects_readiness: stream.settings.affects_readiness,
        });
        ListenerReports(Arc::new(streams.collect()))
    }

    /// Starts every stream.
    pub fn start(self) -> Listening {
        let stop = CancellationToken::new();
        let streams = self.streams.into_iter().map(|stream| tokio::spawn(stream.run(stop.clone())));
        let keepers = self.keepers.into_iter().map(|keeper| tokio::spawn(keeper.run(stop.clone())));
        let tasks = streams.chain(keepers).collect();
        Listening { stop, tasks }
    }
}

impl Listening {
    /// Stops taking items; each stream finishes the item in hand, spools what it queued,
    /// writes its checkpoint and releases its lease, by `deadline` at the latest. A stream
    /// still busy then is ended, so that nothing of it runs after the spool closes; what it
    /// held past its checkpoint is read again at the next start.
    pub async fn stop(self, deadline: tokio::time::Instant) {
        self.stop.cancel();
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
                tracing::warn!("a subscription stream was cut off by the shutdown grace");
            }
        }
    }
}

impl ListenerReports {
    /// Every stream's report, in configuration order.
    pub fn snapshot(&self) -> Vec<StreamReport> {
        self.0.iter().map(|stream| stream.current().clone()).collect()
    }

    /// Whether some topic that affects readiness cannot be subscribed to, or its lease
    /// cannot be taken.
    pub fn any_failing(&self) -> bool {
        self.0.iter().any(|stream| stream.affects_readiness && stream.current().state == StreamState::Failing)
    }
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
