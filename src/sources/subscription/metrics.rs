//! The subscription families, labelled by subscription and topic; each stream makes its
//! series when it starts.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{Histogram, Metrics, OUTCOMES, Series, Tally};
use crate::relay::{Outcome, Refusal};

type Labels = Vec<(&'static str, String)>;

/// Upper bounds, in seconds, for an item's time from receipt to done: that of one event, up
/// to a backlog of a minute, when the queue is full and the backend slow.
const ITEM_DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

fn item_duration_histogram() -> Histogram {
    Histogram::new(ITEM_DURATION_BUCKETS)
}

/// Every subscription family.
#[derive(Clone)]
pub struct SubscriptionMetrics {
    received: Family<Labels, Tally>,
    missed: Family<Labels, Tally>,
    repeats: Family<Labels, Tally>,
    new_pages: Family<Labels, Tally>,
    spilled: Family<Labels, Tally>,
    lost: Family<Labels, Tally>,
    binary: Family<Labels, Tally>,
    subscribe_failures: Family<Labels, Tally>,
    heartbeats: Family<Labels, Tally>,
    stalls: Family<Labels, Tally>,
    discontinuities: Family<Labels, Tally>,
    skipped: Family<Labels, Tally>,
    events: Family<Labels, Tally>,
    refusals: Family<Labels, Tally>,
    item_duration: Family<Labels, Histogram, fn() -> Histogram>,
    owned: Family<Labels, Gauge>,
    listening: Family<Labels, Gauge>,
}

/// One stream's series.
#[derive(Clone)]
pub struct StreamMetrics {
    /// Items received (repeats excluded).
    pub received: Tally,
    /// Items never received, seen from jumps in sequence numbers.
    pub missed: Tally,
    /// Items received again and skipped.
    pub repeats: Tally,
    /// New sequence pages.
    pub new_pages: Tally,
    /// Items spooled at once because the stream's queue was full.
    pub spilled: Tally,
    /// Items lost because the spool could not take them.
    pub lost: Tally,
    /// Binary items, taken as `docs/src/reference/listening.md` describes.
    pub binary: Tally,
    /// Attempts to subscribe that failed.
    pub subscribe_failures: Tally,
    /// Heartbeats received.
    pub heartbeats: Tally,
    /// Streams that brought nothing for `stall_after`, and were opened again.
    pub stalls: Tally,
    /// Discontinuities on the same page.
    pub discontinuities: Tally,
    /// Items those discontinuities skipped.
    pub skipped: Tally,
    /// 1 while this replica owns the topic.
    pub owned: Gauge,
    /// 1 while the stream is subscribed.
    pub listening: Gauge,
    /// Each item's time from receipt to done, its wait in the queue included.
    pub item_duration: Histogram,
    /// Items the relay took, by outcome.
    events: Series<Tally>,
    /// Items the relay refused, by error code.
    refusals: Series<Tally>,
}

impl StreamMetrics {
    /// Counts what became of an item: each item taken or refused is counted once, by its
    /// outcome or its error code.
    pub fn count(&self, settled: &Result<Outcome<'_>, Refusal>) {
        match settled {
            Ok(outcome) => self.events.increment(outcome.code()),
            Err(refusal) => self.refusals.increment(refusal.code()),
        }
    }
}

impl Default for SubscriptionMetrics {
    fn default() -> Self {
        SubscriptionMetrics {
            received: Family::default(),
            missed: Family::default(),
            repeats: Family::default(),
            new_pages: Family::default(),
            spilled: Family::default(),
            lost: Family::default(),
            binary: Family::default(),
            subscribe_failures: Family::default(),
            heartbeats: Family::default(),
            stalls: Family::default(),
            discontinuities: Family::default(),
            skipped: Family::default(),
            events: Family::default(),
            refusals: Family::default(),
            item_duration: Family::new_with_constructor(item_duration_histogram),
            owned: Family::default(),
            listening: Family::default(),
        }
    }
}

impl SubscriptionMetrics {
    /// Registers the families.
    pub fn register(metrics: &mut Metrics) -> Self {
        let this = SubscriptionMetrics::default();
        let counters = [
            ("topic_relay_subscription_items", "Items received on each subscribed topic", &this.received),
            (
                "topic_relay_subscription_missed",
                "Items a subscription never received, seen from jumps in their sequence numbers",
                &this.missed,
            ),
            (
                "topic_relay_subscription_repeats",
                "Items received a second time (after a reconnect) and skipped",
                &this.repeats,
            ),
            (
                "topic_relay_subscription_new_pages",
                "Times Momento started numbering a topic afresh (not a gap)",
                &this.new_pages,
            ),
            (
                "topic_relay_subscription_spilled",
                "Items spooled at once because the topic's queue was full",
                &this.spilled,
            ),
            (
                "topic_relay_subscription_lost",
                "Items received but lost because the spool could not take them",
                &this.lost,
            ),
            (
                "topic_relay_subscription_binary_items",
                "Items published as bytes rather than text",
                &this.binary,
            ),
            (
                "topic_relay_subscription_subscribe_failures",
                "Attempts to subscribe to a topic that failed",
                &this.subscribe_failures,
            ),
            (
                "topic_relay_subscription_heartbeats",
                "Heartbeats received on each topic's stream",
                &this.heartbeats,
            ),
            (
                "topic_relay_subscription_stalls",
                "Streams that brought neither item nor heartbeat for stall_after, and were opened again",
                &this.stalls,
            ),
            (
                "topic_relay_subscription_discontinuities",
                "Discontinuities the service reported on the same page: items skipped",
                &this.discontinuities,
            ),
            (
                "topic_relay_subscription_skipped_items",
                "Items the service's discontinuities skipped",
                &this.skipped,
            ),
            ("topic_relay_subscription_events", "Items the relay took, by outcome", &this.events),
            (
                "topic_relay_subscription_refusals",
                "Items the relay refused, by error code (spool_full and spool_unavailable ones are lost)",
                &this.refusals,
            ),
        ];
        for (name, help, family) in counters {
            metrics.register(name, help, family.clone());
        }
        metrics.register(
            "topic_relay_subscription_item_duration_seconds",
            "Time from an item's receipt to its being done (processed, dropped, refused or spooled), its wait in the queue included",
            this.item_duration.clone(),
        );
        metrics.register(
            "topic_relay_subscription_owned",
            "1 while this replica owns the topic (holds its lease, or needs none)",
            this.owned.clone(),
        );
        metrics.register(
            "topic_relay_subscription_listening",
            "1 while the topic's stream is subscribed",
            this.listening.clone(),
        );
        this
    }

    /// The series of one stream, made now so they show from the start.
    pub fn stream(&self, subscription: &str, topic: &str) -> StreamMetrics {
        let labels = vec![("subscription", subscription.to_owned()), ("topic", topic.to_owned())];
        StreamMetrics {
            received: self.received.get_or_create(&labels).clone(),
            missed: self.missed.get_or_create(&labels).clone(),
            repeats: self.repeats.get_or_create(&labels).clone(),
            new_pages: self.new_pages.get_or_create(&labels).clone(),
            spilled: self.spilled.get_or_create(&labels).clone(),
            lost: self.lost.get_or_create(&labels).clone(),
            binary: self.binary.get_or_create(&labels).clone(),
            subscribe_failures: self.subscribe_failures.get_or_create(&labels).clone(),
            heartbeats: self.heartbeats.get_or_create(&labels).clone(),
            stalls: self.stalls.get_or_create(&labels).clone(),
            discontinuities: self.discontinuities.get_or_create(&labels).clone(),
            skipped: self.skipped.get_or_create(&labels).clone(),
            owned: self.owned.get_or_create(&labels).clone(),
            listening: self.listening.get_or_create(&labels).clone(),
            item_duration: self.item_duration.get_or_create(&labels).clone(),
            events: Series::with_labels(&self.events, OUTCOMES, |outcome| {
                [labels.clone(), vec![("outcome", outcome.to_owned())]].concat()
            }),
            refusals: Series::with_labels(&self.refusals, &Refusal::CODES, |error| {
                [labels.clone(), vec![("error", error.to_owned())]].concat()
            }),
        }
    }
}
