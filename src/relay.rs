//! The relay's core, in the order data moves: route, then delivery (the pipeline, and the
//! spool for what cannot finish). It takes a message from any source and says what became of
//! it. It knows nothing of HTTP or subscriptions: the sources (`sources::*`) hand it messages,
//! and `http::ingest` turns its answers into responses.

use std::sync::Arc;

use arc_swap::ArcSwap;

use tokio::time::Instant;

use crate::delivery::spool::SpoolError;
use crate::delivery::{Delivered, Delivery, DeliveryError};
use crate::event::Message;
use crate::event::Source;
use crate::pipeline::StepError;
use crate::route::UnmatchedAction;
use crate::route::{Route, RouteTable};

/// What became of an event the relay took (a webhook's answer to it is a 2xx). It borrows the
/// route's name from the relay: a clone of the shared name would move its reference count
/// between the HTTP threads' cores on every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'r> {
    /// Every step of the route ran.
    Processed {
        /// The route's name.
        route: &'r str,
    },
    /// A step dropped the event on purpose.
    Dropped {
        /// The route's name.
        route: &'r str,
        /// Why, as the step said.
        reason: String,
    },
    /// No route takes the event, and `[unmatched] action = "ack"`.
    Unmatched,
    /// The event is in the spool and will be finished in the background.
    Spooled {
        /// The route's name.
        route: &'r str,
    },
    /// A step failed in a way retrying cannot fix; the event is kept as a dead letter.
    DeadLettered {
        /// The route's name.
        route: &'r str,
    },
}

impl Outcome<'_> {
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

/// Why the core refused an event. `http::error` gives each its status code; a subscription
/// logs it.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
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
    /// The message is larger than the relay takes (`server.max_body_bytes`).
    #[error("the message is {bytes} bytes, over the limit of {limit}")]
    MessageTooLarge {
        /// The message's size.
        bytes: usize,
        /// `server.max_body_bytes`.
        limit: usize,
    },
    /// The event needed the spool, and the spool is full.
    #[error("the spool is full")]
    SpoolFull,
    /// The event needed the spool, and the spool could not be written.
    #[error("the spool cannot be written")]
    SpoolUnavailable,
}

impl Refusal {
    /// Every refusal's code, for series made before any is counted.
    pub const CODES: [&'static str; 9] = [
        "no_route",
        "rejected",
        "processing_failed",
        "backend_error",
        "backend_unavailable",
        "internal_error",
        "message_too_large",
        "spool_full",
        "spool_unavailable",
    ];

    /// The refusal's name in responses, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoRoute { .. } => "no_route",
            Refusal::Rejected { .. } => "rejected",
            Refusal::ProcessingFailed { .. } => "processing_failed",
            Refusal::BackendRefused { .. } => "backend_error",
            Refusal::Unavailable { .. } => "backend_unavailable",
            Refusal::Panicked { .. } => "internal_error",
            Refusal::MessageTooLarge { .. } => "message_too_large",
            Refusal::SpoolFull => "spool_full",
            Refusal::SpoolUnavailable => "spool_unavailable",
        }
    }
}

/// The relay: routes and delivery, shared by every source. A reload builds a new one with
/// the new routes and the same delivery; an event keeps the one it started with.
pub struct Relay {
    routes: Arc<RouteTable>,
    unmatched: UnmatchedAction,
    delivery: Arc<Delivery>,
}

/// The relay currently in force, swapped whole by a reload. Sources that hold it for long
/// (subscription streams) load it for each item.
pub type LiveRelay = Arc<ArcSwap<Relay>>;

impl Relay {
    /// Takes the routes and delivery, and what to do with an event no route takes.
    pub fn new(unmatched: UnmatchedAction, routes: Arc<RouteTable>, delivery: Arc<Delivery>) -> Self {
        Relay { routes, unmatched, delivery }
    }

    /// The routes this relay runs.
    pub fn routes(&self) -> &Arc<RouteTable> {
        &self.routes
    }

    /// Routes a message from `source` and delivers it. `arrived` is when it came in; the time
    /// budget counts from there.
    pub async fn dispatch(
        &self,
        source: &Source,
        message: Message,
        arrived: Instant,
    ) -> Result<Outcome<'_>, Refusal> {
        let Some(route) = self.routes.select(source, &message.cache, &message.topic, &message.token_id)
        else {
            return self.unmatched(&message.cache, &message.topic);
        };
        route.events.inc();
        let delivered = self.delivery.deliver(source, route, message, arrived).await;
        answer(route, delivered)
    }

    /// Routes a message from `source` and puts it in the spool for the background worker,
    /// without running it now. For sources with more messages in hand than they can run.
    pub async fn hold(&self, source: &Source, message: Message) -> Result<Outcome<'_>, Refusal> {
        let Some(route) = self.routes.select(source, &message.cache, &message.topic, &message.token_id)
        else {
            return self.unmatched(&message.cache, &message.topic);
        };
        route.events.inc();
        let delivered = self.delivery.hold(source, route, message).await;
        answer(route, delivered)
    }

    /// Whether [`Relay::hold`] can keep messages (the spool is on).
    pub fn can_hold(&self) -> bool {
        self.delivery.can_hold()
    }

    fn unmatched(&self, cache: &str, topic: &str) -> Result<Outcome<'static>, Refusal> {
        tracing::debug!(cache, topic, "no route matches the event");
        match self.unmatched {
            UnmatchedAction::Ack => Ok(Outcome::Unmatched),
            UnmatchedAction::Reject => {
                Err(Refusal::NoRoute { cache: cache.to_owned(), topic: topic.to_owned() })
            }
        }
    }
}

fn answer(route: &Route, delivered: Result<Delivered, DeliveryError>) -> Result<Outcome<'_>, Refusal> {
    let name = &*route.name;
    // Refusals are rare, and become errors that carry the name on, so they own it.
    let owned_name = || route.name.clone();
    match delivered {
        Ok(Delivered::Processed) => Ok(Outcome::Processed { route: name }),
        Ok(Delivered::Dropped { reason }) => {
            tracing::debug!(route = name, reason, "event dropped by a step");
            Ok(Outcome::Dropped { route: name, reason })
        }
        Ok(Delivered::Spooled) => Ok(Outcome::Spooled { route: name }),
        Ok(Delivered::DeadLettered) => Ok(Outcome::DeadLettered { route: name }),
        Err(DeliveryError::Rejected(reason)) => Err(Refusal::Rejected { route: owned_name(), reason }),
        Err(DeliveryError::Failed(failure)) => Err(match failure.error {
            StepError::Backend(_) | StepError::Call { .. } => {
                Refusal::BackendRefused { route: owned_name(), step: failure.step, kind: failure.kind }
            }
            _ => Refusal::ProcessingFailed { route: owned_name(), step: failure.step, kind: failure.kind },
        }),
        Err(DeliveryError::Unavailable) => Err(Refusal::Unavailable { route: owned_name() }),
        Err(DeliveryError::Panicked) => Err(Refusal::Panicked { route: owned_name() }),
        Err(DeliveryError::Spool(SpoolError::Full)) => Err(Refusal::SpoolFull),
        Err(DeliveryError::Spool(error)) => {
            tracing::error!(%error, "an event could not be spooled");
            Err(Refusal::SpoolUnavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_code_among_the_codes_series_are_made_for() {
        let route: Arc<str> = Arc::from("r");
        let refusals = [
            Refusal::NoRoute { cache: "c".into(), topic: "t".into() },
            Refusal::Rejected { route: route.clone(), reason: "no".into() },
            Refusal::ProcessingFailed { route: route.clone(), step: 0, kind: "k".into() },
            Refusal::BackendRefused { route: route.clone(), step: 0, kind: "k".into() },
            Refusal::Unavailable { route: route.clone() },
            Refusal::Panicked { route },
            Refusal::MessageTooLarge { bytes: 5, limit: 4 },
            Refusal::SpoolFull,
            Refusal::SpoolUnavailable,
        ];
        let codes: std::collections::BTreeSet<&str> = refusals.iter().map(Refusal::code).collect();
        assert_eq!(codes, Refusal::CODES.into_iter().collect(), "one code each, and no other");
    }
}
