//! The webhook source: Momento calls `POST /webhooks/<name>`. Verification happens in front,
//! in `verify::VerifyLayer`; here a verified body goes through the accept stage (parse,
//! freshness, replays) and becomes a message for the relay core.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Source;
use crate::accept::replay::{ReplayGuard, Sighting};
use crate::accept::{self, AcceptError, Freshness};
use crate::common::{Secret, duration};
use crate::event::Message;
use crate::metrics::Metrics;
use crate::telemetry::Throttle;
use crate::verify::{Verified, Verifier};

/// `[webhooks.<name>]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Signing secrets; a request signed with any one of them is accepted, so a secret can be
    /// rotated without losing events. Entries that expand to nothing are dropped.
    pub secrets: Vec<Secret>,
    /// Events whose `publish_timestamp` is older than this are refused (Momento advises 60 s).
    #[serde(default = "default_max_age", with = "duration")]
    pub max_age: Duration,
    /// Events whose `publish_timestamp` is this far in the future are refused too.
    #[serde(default = "default_max_future_skew", with = "duration")]
    pub max_future_skew: Duration,
}

fn default_max_age() -> Duration {
    Duration::from_secs(60)
}

fn default_max_future_skew() -> Duration {
    Duration::from_secs(5)
}

/// One configured webhook: its name, its keyed secrets and its freshness window.
pub struct Webhook {
    /// The name in `POST /webhooks/<name>`.
    pub name: String,
    /// The source its events carry.
    pub source: Source,
    /// Its secrets, keyed once, for the verification layer in front of it.
    pub verifier: Verifier,
    freshness: Freshness,
}

/// Why a verified webhook body was not accepted. `http::error` gives each its status code.
#[derive(Debug, thiserror::Error)]
pub enum NotAccepted {
    /// The body is not a usable event: malformed, stale or from the future.
    #[error(transparent)]
    Invalid(#[from] AcceptError),
    /// The same signed body was accepted before, while its event was fresh.
    #[error("this signed event was already accepted")]
    Duplicate,
    /// The replay check is full and `delivery.dedup_when_full = "refuse"`.
    #[error("the replay check remembers as many events as it may; retry shortly")]
    ReplayMemoryFull,
}

/// Every configured webhook, and the replay check they share.
pub struct Webhooks {
    webhooks: BTreeMap<String, Arc<Webhook>>,
    replays: Arc<ReplayGuard>,
    metrics: Arc<Metrics>,
    /// The replay check's memory being full is warned about once a minute.
    replay_full_warnings: Throttle,
}

impl Webhooks {
    /// Keys every webhook's secrets.
    pub fn new(
        settings: &BTreeMap<String, WebhookSettings>,
        replays: Arc<ReplayGuard>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let webhooks = settings
            .iter()
            .map(|(name, webhook)| {
                let freshness =
                    Freshness { max_age: webhook.max_age, max_future_skew: webhook.max_future_skew };
                let verifier = Verifier::new(webhook.secrets.iter().map(|secret| secret.expose()));
                let source = Source::Webhook(name.as_str().into());
                (name.clone(), Arc::new(Webhook { name: name.clone(), source, verifier, freshness }))
            })
            .collect();
        Webhooks { webhooks, replays, metrics, replay_full_warnings: Throttle::every(60) }
    }

    /// Every configured webhook.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Webhook>> {
        self.webhooks.values()
    }

    /// The only webhook, when exactly one is configured: `POST /webhook` serves it.
    pub fn only(&self) -> Option<&Arc<Webhook>> {
        let mut webhooks = self.webhooks.values();
        match (webhooks.next(), webhooks.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    /// Signatures the replay check remembers now.
    pub fn remembered_signatures(&self) -> u64 {
        self.replays.remembered()
    }

    /// The accept stage: parses the verified body, checks its freshness, and refuses a replay.
    pub async fn accept(&self, webhook: &Webhook, verified: &Verified) -> Result<Message, NotAccepted> {
        let event = accept::parse(&verified.body)?;
        accept::check_freshness(&event, webhook.freshness, accept::now_ms())?;
        let forget_after_ms =
            event.publish_timestamp.saturating_add(crate::common::duration_ms(webhook.freshness.max_age));
        match self.replays.check(&verified.signature, forget_after_ms).await {
            Sighting::First => {}
            Sighting::Replay => return Err(NotAccepted::Duplicate),
            Sighting::Unremembered => {
                self.metrics.replay_unremembered.inc();
                self.warn_replay_memory_full("accepting new events without remembering them");
            }
            Sighting::Full => {
                self.metrics.replay_refused.inc();
                self.warn_replay_memory_full("refusing new events (dedup_when_full = \"refuse\")");
                return Err(NotAccepted::ReplayMemoryFull);
            }
        }
        Ok(Message::from(&event))
    }

    fn warn_replay_memory_full(&self, action: &str) {
        if let Some(suppressed) = self.replay_full_warnings.admit() {
            tracing::warn!(
                remembered = self.replays.remembered(),
                suppressed,
                "the replay check holds delivery.dedup_capacity signatures: {action}"
            );
        }
    }
}
