//! The subscription source: the relay listens to topics itself, as Momento now advises for
//! processing Topics outside Lambda. Each `[subscriptions.<name>]` holds one stream per topic;
//! each item becomes a message with the publisher's `token_id`, and goes through the same
//! routes, pipeline, spool and dead letters as a webhook event.
//!
//! Items carry a sequence number per topic. A jump means items were missed: they are counted
//! in `topic_relay_subscription_missed_total{subscription,topic}` and the range is logged. An
//! item at or below the last one seen is a repeat, and is skipped.
//!
//! This version listens on the embedded backend's bus.

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Source;
use crate::accept::now_ms;
use crate::backend::{MemoryBus, Published};
use crate::event::Message;
use crate::metrics::Metrics;
use crate::relay::{Refusal, Relay};

/// `[subscriptions.<name>]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSettings {
    /// The cache whose topics are listened to.
    pub cache: String,
    /// The topics, one stream each.
    pub topics: Vec<String>,
}

type Labels = Vec<(&'static str, String)>;

/// Items received and items missed, per subscription and topic, made at startup.
#[derive(Clone)]
pub struct SubscriptionMetrics {
    received: Family<Labels, Counter>,
    missed: Family<Labels, Counter>,
    lost: Family<Labels, Counter>,
}

impl SubscriptionMetrics {
    /// Registers the families; their series are made when the streams start.
    pub fn register(metrics: &mut Metrics) -> Self {
        let this = SubscriptionMetrics {
            received: Family::default(),
            missed: Family::default(),
            lost: Family::default(),
        };
        metrics.register(
            "topic_relay_subscription_items",
            "Items received on each subscribed topic",
            this.received.clone(),
        );
        metrics.register(
            "topic_relay_subscription_missed",
            "Items a subscription never received, seen from jumps in their sequence numbers",
            this.missed.clone(),
        );
        metrics.register(
            "topic_relay_subscription_lost",
            "Items received but lost because the spool could not take them",
            this.lost.clone(),
        );
        this
    }
}

/// One topic's stream: its counters and where it stands.
struct Stream {
    source: Source,
    cache: String,
    topic: String,
    last_sequence: Option<u64>,
    received: Counter,
    missed: Counter,
    lost: Counter,
}

/// Starts one stream per topic of every subscription, on the embedded bus. They end when
/// `stop` is cancelled, after the item they are handling.
pub fn listen_on_bus(
    subscriptions: &BTreeMap<String, SubscriptionSettings>,
    bus: &MemoryBus,
    relay: Arc<Relay>,
    metrics: &SubscriptionMetrics,
    stop: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (name, subscription) in subscriptions {
        for topic in &subscription.topics {
            let labels = vec![("subscription", name.clone()), ("topic", topic.clone())];
            let stream = Stream {
                source: Source::Subscription(name.as_str().into()),
                cache: subscription.cache.clone(),
                topic: topic.clone(),
                last_sequence: None,
                received: metrics.received.get_or_create(&labels).clone(),
                missed: metrics.missed.get_or_create(&labels).clone(),
                lost: metrics.lost.get_or_create(&labels).clone(),
            };
            let receiver = bus.subscribe_all();
            tasks.push(tokio::spawn(stream.run(receiver, relay.clone(), stop.clone())));
            tracing::info!(subscription = name, cache = subscription.cache, topic, "listening to the topic");
        }
    }
    tasks
}

impl Stream {
    async fn run(
        mut self,
        mut receiver: tokio::sync::broadcast::Receiver<Arc<Published>>,
        relay: Arc<Relay>,
        stop: CancellationToken,
    ) {
        loop {
            let item = tokio::select! {
                () = stop.cancelled() => return,
                item = receiver.recv() => item,
            };
            match item {
                Ok(item) if item.cache == self.cache && item.topic == self.topic => {
                    if let Some(message) = self.take(&item) {
                        self.dispatch(&relay, message).await;
                    }
                }
                Ok(_) => {}
                // The bus is shared by every topic; what this topic missed shows in its own
                // sequence numbers, on the next item.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// The item as a message, unless it repeats one already taken; counts any gap before it.
    fn take(&mut self, item: &Published) -> Option<Message> {
        if let Some(last) = self.last_sequence {
            if item.sequence <= last {
                tracing::debug!(topic = self.topic, sequence = item.sequence, "a repeated item is skipped");
                return None;
            }
            if item.sequence > last + 1 {
                let (from, to) = (last + 1, item.sequence - 1);
                self.missed.inc_by(to - from + 1);
                tracing::warn!(source = %self.source, topic = self.topic, from, to, "items were missed on the topic");
            }
        }
        self.last_sequence = Some(item.sequence);
        self.received.inc();
        let now = now_ms();
        let mut message = Message::new(&item.cache, &item.topic, &item.text);
        message.token_id = item.publisher_id.clone();
        message.topic_sequence_number = item.sequence;
        (message.event_timestamp, message.publish_timestamp) = (item.published_ms, now);
        Some(message)
    }

    async fn dispatch(&self, relay: &Relay, message: Message) {
        match relay.dispatch(&self.source, message, Instant::now()).await {
            Ok(outcome) => tracing::debug!(source = %self.source, outcome = outcome.code(), "item handled"),
            Err(refusal @ (Refusal::SpoolFull | Refusal::SpoolUnavailable)) => {
                self.lost.inc();
                tracing::error!(source = %self.source, topic = self.topic, %refusal, "an item is lost: the spool cannot take it");
            }
            Err(refusal) => {
                tracing::warn!(source = %self.source, topic = self.topic, %refusal, "an item was refused")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Stream {
        Stream {
            source: Source::Subscription("inbox".into()),
            cache: "chat".into(),
            topic: "topic 1".into(),
            last_sequence: None,
            received: Counter::default(),
            missed: Counter::default(),
            lost: Counter::default(),
        }
    }

    fn item(sequence: u64) -> Published {
        Published {
            cache: "chat".into(),
            topic: "topic 1".into(),
            text: format!("item {sequence}"),
            sequence,
            publisher_id: "user-42".into(),
            published_ms: 1,
        }
    }

    #[test]
    fn an_item_becomes_a_message_with_its_publishers_token_id_and_sequence() {
        let message = stream().take(&item(7)).expect("taken");
        assert_eq!((message.token_id.as_str(), message.text.as_str()), ("user-42", "item 7"));
        assert_eq!(message.topic_sequence_number, 7);
    }

    #[test]
    fn a_jump_in_sequence_numbers_counts_the_items_missed_and_a_repeat_is_skipped() {
        let mut stream = stream();
        for sequence in [1, 2, 5] {
            assert!(stream.take(&item(sequence)).is_some());
        }
        assert_eq!(stream.missed.get(), 2, "3 and 4 never came");
        assert!(stream.take(&item(5)).is_none(), "a repeat");
        assert!(stream.take(&item(4)).is_none(), "older than the last one taken");
        assert!(stream.take(&item(6)).is_some());
        assert_eq!((stream.received.get(), stream.missed.get()), (4, 2));
    }
}
