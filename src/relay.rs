//! The relay's core, in the order data moves: accept, route, then delivery (the pipeline,
//! and the spool for what cannot finish). It takes a verified webhook body and says what
//! became of the event. It knows nothing of HTTP: verification happens in front of it
//! (`verify::VerifyLayer`), and `http::ingest` turns its answers into responses.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::accept::replay::{ReplayGuard, Sighting};
use crate::accept::{self, AcceptError, Freshness};
use crate::config::{Settings, UnmatchedAction};
use crate::delivery::spool::SpoolError;
use crate::delivery::{Delivered, Delivery, DeliveryError};
use crate::event::Message;
use crate::metrics::Metrics;
use crate::pipeline::StepError;
use crate::route::{Route, RouteTable};
use crate::verify::{Verified, Verifier};

/// One configured webhook: its name, its keyed secrets and its freshness window.
pub struct Webhook {
    /// The name in `POST /webhooks/<name>`.
    pub name: String,
    /// Its secrets, keyed once, for the verification layer in front of it.
    pub verifier: Verifier,
    freshness: Freshness,
}

/// What became of an event that was answered with 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step of the route ran.
    Processed {
        /// The route's name.
        route: Arc<str>,
    },
    /// A step dropped the event on purpose.
    Dropped {
        /// The route's name.
        route: Arc<str>,
        /// Why, as the step said.
        reason: String,
    },
    /// No route takes the event, and `[unmatched] action = "ack"`.
    Unmatched,
    /// The event is in the spool and will be finished in the background.
    Spooled {
        /// The route's name.
        route: Arc<str>,
    },
    /// A step failed in a way retrying cannot fix; the event is kept as a dead letter.
    DeadLettered {
        /// The route's name.
        route: Arc<str>,
    },
}

impl Outcome {
    /// The outcome's name in responses, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Processed { .. } => "processed",
            Outcome::Dropped { .. } => "dropped",
            Outcome::Unmatched => "unmatched",
            Outcome::Spooled { .. } => "spooled",
            Outcome::DeadLettered { .. } => "dead_lettered",
        }
    }
}

/// Why an event was refused. `http::error` gives each its status code.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The verified body is not a usable event: malformed, stale or from the future.
    #[error(transparent)]
    NotAccepted(#[from] AcceptError),
    /// The same signed body was accepted before, within the freshness window.
    #[error("this signed event was already accepted")]
    Duplicate,
    /// The replay check is full and `delivery.dedup_when_full = "refuse"`.
    #[error("the replay check remembers as many events as it may; retry shortly")]
    ReplayMemoryFull,
    /// No route takes the event, and `[unmatched] action = "reject"`.
    #[error("no route matches cache {cache:?}, topic {topic:?}")]
    NoRoute {
        /// The event's cache.
        cache: String,
        /// The event's topic.
        topic: String,
    },
    /// A step refused the event on purpose.
    #[error("route `{route}` refused the event: {reason}")]
    Rejected {
        /// The route's name.
        route: Arc<str>,
        /// Why, as the step said.
        reason: String,
    },
    /// A step cannot process this event, now or ever (such as text that is not JSON).
    #[error("step {step} ({kind}) of route `{route}` could not process the event; the relay's log has why")]
    ProcessingFailed {
        /// The route's name.
        route: Arc<str>,
        /// Index of the step in its route.
        step: usize,
        /// The step's kind, such as `publish`.
        kind: String,
    },
    /// The backend refused a step's call for good (only with `mode = "off"`).
    #[error("step {step} ({kind}) of route `{route}` was refused by the backend; the relay's log has why")]
    BackendRefused {
        /// The route's name.
        route: Arc<str>,
        /// Index of the step in its route.
        step: usize,
        /// The step's kind, such as `publish`.
        kind: String,
    },
    /// The backend could not be reached within the time budget (only with `mode = "off"`).
    #[error("route `{route}` could not finish within its time budget")]
    Unavailable {
        /// The route's name.
        route: Arc<str>,
    },
    /// A step panicked (only with `mode = "off"`; otherwise the event becomes a dead letter).
    #[error("a step of route `{route}` failed unexpectedly; the relay's log has the details")]
    Panicked {
        /// The route's name.
        route: Arc<str>,
    },
    /// The event needed the spool, and the spool is full.
    #[error("the spool is full")]
    SpoolFull,
    /// The event needed the spool, and the spool could not be written.
    #[error("the spool cannot be written")]
    SpoolUnavailable,
}

/// The relay: webhooks, routes and the backend, built once at startup and shared.
pub struct Relay {
    webhooks: BTreeMap<String, Arc<Webhook>>,
    routes: RouteTable,
    unmatched: UnmatchedAction,
    replays: Arc<ReplayGuard>,
    delivery: Arc<Delivery>,
    metrics: Arc<Metrics>,
    /// The second the replay check last warned that it is full, so it warns once a minute.
    replay_full_warned: AtomicU64,
}

impl Relay {
    /// Keys every webhook's secrets and takes the routes, replay guard and delivery.
    pub fn new(
        settings: &Settings,
        routes: RouteTable,
        replays: Arc<ReplayGuard>,
        delivery: Arc<Delivery>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let webhooks = settings
            .webhooks
            .iter()
            .map(|(name, webhook)| {
                let freshness =
                    Freshness { max_age: webhook.max_age, max_future_skew: webhook.max_future_skew };
                let verifier = Verifier::new(webhook.secrets.iter().map(|secret| secret.expose()));
                (name.clone(), Arc::new(Webhook { name: name.clone(), verifier, freshness }))
            })
            .collect();
        let unmatched = settings.unmatched.action;
        let replay_full_warned = AtomicU64::new(0);
        Relay { webhooks, routes, unmatched, replays, delivery, metrics, replay_full_warned }
    }

    /// Every configured webhook.
    pub fn webhooks(&self) -> impl Iterator<Item = &Arc<Webhook>> {
        self.webhooks.values()
    }

    /// Signatures the replay check remembers now.
    pub fn remembered_signatures(&self) -> u64 {
        self.replays.remembered()
    }

    /// The only webhook, when exactly one is configured: `POST /webhook` serves it.
    pub fn default_webhook(&self) -> Option<&Arc<Webhook>> {
        let mut webhooks = self.webhooks.values();
        match (webhooks.next(), webhooks.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    /// Takes one verified request through every stage after verification. `arrived` is when
    /// the request came in; the time budget counts from there.
    pub async fn receive(
        &self,
        webhook: &Webhook,
        verified: &Verified,
        arrived: Instant,
    ) -> Result<Outcome, Refusal> {
        let event = accept::parse(&verified.body)?;
        accept::check_freshness(&event, webhook.freshness, accept::now_ms())?;
        let forget_after_ms =
            event.publish_timestamp.saturating_add(accept::duration_ms(webhook.freshness.max_age));
        match self.replays.check(&verified.signature, forget_after_ms).await {
            Sighting::First => {}
            Sighting::Replay => return Err(Refusal::Duplicate),
            Sighting::Unremembered => {
                self.metrics.replay_unremembered.inc();
                self.warn_replay_memory_full("accepting new events without remembering them");
            }
            Sighting::Full => {
                self.metrics.replay_refused.inc();
                self.warn_replay_memory_full("refusing new events (dedup_when_full = \"refuse\")");
                return Err(Refusal::ReplayMemoryFull);
            }
        }
        let Some(route) = self.routes.select(&webhook.name, &event.cache, &event.topic, &event.token_id)
        else {
            return self.unmatched(&event.cache, &event.topic);
        };
        self.metrics.routes.increment(&route.name);
        let delivered = self.delivery.deliver(&webhook.name, route, Message::from(&event), arrived).await;
        answer(route, delivered)
    }

    fn warn_replay_memory_full(&self, action: &str) {
        let now = accept::now_ms() / 1000;
        let last = self.replay_full_warned.load(Ordering::Relaxed);
        if now >= last + 60
            && self
                .replay_full_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                remembered = self.replays.remembered(),
                "the replay check holds delivery.dedup_capacity signatures: {action}"
            );
        }
    }

    fn unmatched(&self, cache: &str, topic: &str) -> Result<Outcome, Refusal> {
        tracing::debug!(cache, topic, "no route matches the event");
        match self.unmatched {
            UnmatchedAction::Ack => Ok(Outcome::Unmatched),
            UnmatchedAction::Reject => {
                Err(Refusal::NoRoute { cache: cache.to_owned(), topic: topic.to_owned() })
            }
        }
    }
}

fn answer(route: &Route, delivered: Result<Delivered, DeliveryError>) -> Result<Outcome, Refusal> {
    let route = route.name.clone();
    match delivered {
        Ok(Delivered::Processed) => Ok(Outcome::Processed { route }),
        Ok(Delivered::Dropped { reason }) => {
            tracing::debug!(%route, reason, "event dropped by a step");
            Ok(Outcome::Dropped { route, reason })
        }
        Ok(Delivered::Spooled) => Ok(Outcome::Spooled { route }),
        Ok(Delivered::DeadLettered) => Ok(Outcome::DeadLettered { route }),
        Err(DeliveryError::Rejected(reason)) => Err(Refusal::Rejected { route, reason }),
        Err(DeliveryError::Failed(failure)) => Err(match failure.error {
            StepError::Backend(_) => {
                Refusal::BackendRefused { route, step: failure.step, kind: failure.kind }
            }
            _ => Refusal::ProcessingFailed { route, step: failure.step, kind: failure.kind },
        }),
        Err(DeliveryError::Unavailable) => Err(Refusal::Unavailable { route }),
        Err(DeliveryError::Panicked) => Err(Refusal::Panicked { route }),
        Err(DeliveryError::Spool(SpoolError::Full)) => Err(Refusal::SpoolFull),
        Err(DeliveryError::Spool(error)) => {
            tracing::error!(%error, "an event could not be spooled");
            Err(Refusal::SpoolUnavailable)
        }
    }
}
