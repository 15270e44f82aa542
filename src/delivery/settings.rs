//! `[delivery]`: the spool, redelivery, dead letters and replay protection.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::accept::replay::WhenFull;
use crate::common::duration;

/// How events are kept safe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// Run each event's steps at once; write to the spool only what cannot finish within the
    /// time budget, then answer 202 and finish it in the background.
    #[default]
    Inline,
    /// Write every verified event to the spool before its steps run (write-ahead).
    Spool,
    /// No spool: an event that cannot finish in time is answered 503 and lost.
    Off,
}

impl DeliveryMode {
    /// The name as `delivery.mode` spells it, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Inline => "inline",
            DeliveryMode::Spool => "spool",
            DeliveryMode::Off => "off",
        }
    }
}

/// Where replay protection remembers the events it has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DedupMode {
    /// In this process's memory.
    #[default]
    Memory,
    /// In Momento Cache as well, so that replicas behind one load balancer share it.
    Momento,
}

/// A topic that dead letters are also published to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicAddress {
    /// The cache.
    pub cache: String,
    /// The topic.
    pub topic: String,
}

/// `[delivery]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// `inline`, `spool` (write-ahead) or `off`.
    pub mode: DeliveryMode,
    /// Directory of the spool's database file.
    pub spool_dir: PathBuf,
    /// With more than 1, relays sharing `spool_dir` (one network volume for several tasks)
    /// each take the first free `slot-<n>` under it, and a relay that replaces a dead one
    /// takes over its spool.
    pub spool_slots: u32,
    /// Time an event's steps may take inline before it is spooled instead. Default: three
    /// quarters of `server.request_timeout`.
    #[serde(with = "duration::optional", skip_serializing_if = "Option::is_none")]
    pub inline_budget: Option<Duration>,
    /// Events the spool holds at most; past it, new events that need the spool get 503.
    pub max_spooled_events: u64,
    /// Wait before the first background retry; it doubles with each attempt, with jitter.
    #[serde(with = "duration")]
    pub retry_initial: Duration,
    /// Longest wait between background retries.
    #[serde(with = "duration")]
    pub retry_max: Duration,
    /// Attempts after which an event becomes a dead letter.
    pub max_attempts: u32,
    /// Age after which an event that still fails becomes a dead letter.
    #[serde(with = "duration")]
    pub dead_letter_after: Duration,
    /// Also publish each dead letter here, as JSON.
    pub dead_letter_topic: Option<TopicAddress>,
    /// Spooled events retried at the same time.
    pub redelivery_concurrency: usize,
    /// `memory`, or `momento` to share the seen-set between replicas.
    pub dedup: DedupMode,
    /// Signatures remembered in memory at most; each is remembered until its event is stale.
    pub dedup_capacity: u64,
    /// What happens to a new event once `dedup_capacity` signatures are remembered.
    pub dedup_when_full: WhenFull,
    /// Cache holding the shared seen-set with `dedup = "momento"`. Default: the readiness
    /// probe's cache.
    pub dedup_cache: Option<String>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            mode: DeliveryMode::Inline,
            spool_dir: PathBuf::from("spool"),
            spool_slots: 1,
            inline_budget: None,
            max_spooled_events: 100_000,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_attempts: 50,
            dead_letter_after: Duration::from_secs(24 * 3600),
            dead_letter_topic: None,
            redelivery_concurrency: 16,
            dedup: DedupMode::Memory,
            // Three times Momento's top webhook rate (5,000/s) over the default window (65 s).
            dedup_capacity: 1_000_000,
            dedup_when_full: WhenFull::Accept,
            dedup_cache: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryMode;

    #[test]
    fn a_delivery_mode_is_logged_as_the_config_spells_it() {
        for mode in [DeliveryMode::Inline, DeliveryMode::Spool, DeliveryMode::Off] {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
    }
}
