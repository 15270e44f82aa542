//! The relay's core, in the order data moves: verify, accept, route, pipeline. It takes a
//! webhook request's name, body and signature and says what became of the event. It knows
//! nothing of HTTP; `http::ingest` turns its answers into responses.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::accept::{self, AcceptError, Freshness};
use crate::backend::Backend;
use crate::config::{Settings, UnmatchedAction};
use crate::event::Message;
use crate::metrics::Metrics;
use crate::pipeline::{Finished, StepError};
use crate::route::{Route, RouteTable};
use crate::verify::{Verifier, VerifyError};

/// One configured webhook: its name, its keyed secrets and its freshness window.
pub struct Webhook {
    /// The name in `POST /webhooks/<name>`.
    pub name: String,
    verifier: Verifier,
    freshness: Freshness,
}

/// What became of an event that was answered with 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step of the route ran.
    Processed { route: Arc<str> },
    /// A step dropped the event on purpose.
    Dropped { route: Arc<str>, reason: String },
    /// No route takes the event, and `[unmatched] action = "ack"`.
    Unmatched,
}

impl Outcome {
    /// The outcome's name in responses, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Processed { .. } => "processed",
            Outcome::Dropped { .. } => "dropped",
            Outcome::Unmatched => "unmatched",
        }
    }
}

/// Why an event was refused. `http::error` gives each its status code.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No webhook of that name is configured.
    #[error("no webhook named {0:?} is configured")]
    UnknownWebhook(String),
    /// `POST /webhook` without a name, while several webhooks are configured.
    #[error("several webhooks are configured; post to /webhooks/<name>")]
    NoDefaultWebhook,
    /// The signature is missing, malformed or wrong.
    #[error(transparent)]
    Unverified(#[from] VerifyError),
    /// The verified body is not a usable event: malformed, stale or from the future.
    #[error(transparent)]
    NotAccepted(#[from] AcceptError),
    /// No route takes the event, and `[unmatched] action = "reject"`.
    #[error("no route matches cache {cache:?}, topic {topic:?}")]
    NoRoute { cache: String, topic: String },
    /// A step refused the event on purpose.
    #[error("route `{route}` refused the event: {reason}")]
    Rejected { route: Arc<str>, reason: String },
    /// A step failed in a way that trying again will not fix.
    #[error("step {step} ({kind}) of route `{route}` failed")]
    Failed { route: Arc<str>, step: usize, kind: String, error: StepError },
    /// The backend could not be reached within the time budget.
    #[error("route `{route}` could not finish within its time budget")]
    Unavailable { route: Arc<str> },
}

/// The relay: webhooks, routes and the backend, built once at startup and shared.
pub struct Relay {
    webhooks: BTreeMap<String, Webhook>,
    routes: RouteTable,
    unmatched: UnmatchedAction,
    backend: Arc<dyn Backend>,
    budget: Duration,
    metrics: Arc<Metrics>,
}

impl Relay {
    /// Keys every webhook's secrets and takes the routes and backend.
    pub fn new(
        settings: &Settings,
        routes: RouteTable,
        backend: Arc<dyn Backend>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let webhooks = settings
            .webhooks
            .iter()
            .map(|(name, webhook)| {
                let freshness =
                    Freshness { max_age: webhook.max_age, max_future_skew: webhook.max_future_skew };
                let verifier = Verifier::new(&webhook.secrets);
                (name.clone(), Webhook { name: name.clone(), verifier, freshness })
            })
            .collect();
        Relay {
            webhooks,
            routes,
            unmatched: settings.unmatched.action,
            backend,
            budget: inline_budget(settings.server.request_timeout),
            metrics,
        }
    }

    /// The webhook called `name`; without a name, the only one configured.
    pub fn webhook(&self, name: Option<&str>) -> Result<&Webhook, Refusal> {
        match name {
            Some(name) => self.webhooks.get(name).ok_or_else(|| Refusal::UnknownWebhook(name.to_owned())),
            None if self.webhooks.len() == 1 => Ok(self.webhooks.values().next().expect("one webhook")),
            None => Err(Refusal::NoDefaultWebhook),
        }
    }

    /// Takes one request through every stage. Nothing reads the body before it is verified.
    pub async fn receive(
        &self,
        webhook: &Webhook,
        body: &[u8],
        signature: Option<&[u8]>,
    ) -> Result<Outcome, Refusal> {
        webhook.verifier.verify(body, signature)?;
        let event = accept::parse(body)?;
        accept::check_freshness(&event, webhook.freshness, accept::now_ms())?;
        let Some(route) = self.routes.select(&webhook.name, &event.cache, &event.topic, &event.token_id)
        else {
            return self.unmatched(&event.cache, &event.topic);
        };
        self.metrics.routes.increment(&route.name);
        self.run(route, Message::from(&event)).await
    }

    fn unmatched(&self, cache: &str, topic: &str) -> Result<Outcome, Refusal> {
        tracing::info!(cache, topic, "no route matches the event");
        match self.unmatched {
            UnmatchedAction::Ack => Ok(Outcome::Unmatched),
            UnmatchedAction::Reject => {
                Err(Refusal::NoRoute { cache: cache.to_owned(), topic: topic.to_owned() })
            }
        }
    }

    async fn run(&self, route: &Route, mut message: Message) -> Result<Outcome, Refusal> {
        let mut next_step = 0;
        let run = route.pipeline.run(&mut message, &mut next_step, self.backend.as_ref());
        let name = route.name.clone();
        match tokio::time::timeout(self.budget, run).await {
            Ok(Ok(Finished::Completed)) => Ok(Outcome::Processed { route: name }),
            Ok(Ok(Finished::Dropped { step, reason })) => {
                tracing::info!(route = %name, step, reason, "event dropped by a step");
                Ok(Outcome::Dropped { route: name, reason })
            }
            Ok(Err(failure)) => {
                tracing::warn!(route = %name, step = failure.step, kind = failure.kind, error = %failure.error, "step failed");
                Err(match failure.error {
                    StepError::Rejected(reason) => Refusal::Rejected { route: name, reason },
                    error if error.is_retryable() => Refusal::Unavailable { route: name },
                    error => Refusal::Failed { route: name, step: failure.step, kind: failure.kind, error },
                })
            }
            Err(_elapsed) => {
                tracing::warn!(route = %name, step = next_step, "time budget ran out");
                Err(Refusal::Unavailable { route: name })
            }
        }
    }
}

/// How long a pipeline may run inline: what is left of the request timeout once a margin
/// for answering is kept back.
fn inline_budget(request_timeout: Duration) -> Duration {
    request_timeout.mul_f64(0.75)
}
