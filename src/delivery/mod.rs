//! Stage 5 of the flow, delivery: run a route's steps within the time budget, and keep
//! whatever cannot finish in the durable spool until it can. An event answered 2xx is either
//! done or safely on disk.

pub mod backoff;
pub mod record;
pub mod redeliver;
pub mod spool;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use tokio::time::Instant;

use crate::accept::now_ms;
use crate::backend::Backend;
use crate::config::{DeliveryMode, DeliverySettings, TopicAddress};
use crate::event::Message;
use crate::pipeline::{Finished, StepError, StepFailure};
use crate::route::Route;
use crate::sources::Source;
use backoff::Backoff;
use record::{DeadLetter, SpooledEvent};
use spool::{EventKey, Spool, SpoolError};

/// What became of an event that the relay answers 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Every step ran.
    Processed,
    /// A step dropped it on purpose.
    Dropped {
        /// Why, as the step said.
        reason: String,
    },
    /// It is in the spool and will be finished in the background.
    Spooled,
    /// It failed in a way retrying cannot fix; it is kept as a dead letter.
    DeadLettered,
}

/// Why an event is refused.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A step refused it on purpose.
    #[error("{0}")]
    Rejected(String),
    /// A step failed for good (or, with `mode = "off"`, the backend refused it).
    #[error("step {} ({}) failed", .0.step, .0.kind)]
    Failed(StepFailure),
    /// With `mode = "off"`: the backend could not be reached in time.
    #[error("the backend could not be reached within the time budget")]
    Unavailable,
    /// The spool could not take it.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// With `mode = "off"`: a step panicked.
    #[error("a step panicked")]
    Panicked,
}

/// An event after its inline run: where it came from, how far it got, and its write-ahead
/// record, if it has one.
struct Ran<'a> {
    source: &'a Source,
    route: &'a Route,
    message: Message,
    next_step: usize,
    written: Option<EventKey>,
}

/// How one inline run of a route's steps ended.
enum Run {
    Finished(Finished),
    Failed(StepFailure),
    OutOfTime,
    /// A step panicked (a bug); the event is kept as it was before that step.
    Panicked,
}

/// Runs events through their routes and keeps what cannot finish.
pub struct Delivery {
    mode: DeliveryMode,
    budget: Duration,
    lease: Duration,
    backend: Arc<dyn Backend>,
    spool: Option<Spool>,
    backoff: Backoff,
    dead_letter_topic: Option<TopicAddress>,
}

impl Delivery {
    /// Delivery as configured; `spool` is `None` exactly when the mode is `off`.
    pub fn new(
        settings: &DeliverySettings,
        request_timeout: Duration,
        backend: Arc<dyn Backend>,
        spool: Option<Spool>,
    ) -> Self {
        Delivery {
            mode: settings.mode,
            budget: settings.inline_budget.unwrap_or(request_timeout.mul_f64(0.75)),
            // A write-ahead record is not retried in the background while its request runs.
            lease: request_timeout + Duration::from_secs(1),
            backend,
            spool,
            backoff: Backoff::new(settings.retry_initial, settings.retry_max),
            dead_letter_topic: settings.dead_letter_topic.clone(),
        }
    }

    /// Delivers one event that `route` took from `source`. The time budget counts from
    /// `arrived`, when the event came in, so that reading it and checking it count too.
    pub async fn deliver(
        &self,
        source: &Source,
        route: &Route,
        message: Message,
        arrived: Instant,
    ) -> Result<Delivered, DeliveryError> {
        let deadline = arrived + self.budget;
        match (&self.spool, self.mode) {
            (Some(spool), DeliveryMode::Spool) => {
                self.write_ahead(spool, source, route, message, deadline).await
            }
            (Some(spool), _) => self.inline_then_spool(spool, source, route, message, deadline).await,
            (None, _) => self.inline_only(route, message, deadline).await,
        }
    }

    /// Whether events can be held in a spool for later (`mode` is not `off`).
    pub fn can_hold(&self) -> bool {
        self.spool.is_some()
    }

    /// Puts an event in the spool without running it; the background worker runs it soon.
    /// For a source that has more events in hand than it can run now.
    pub async fn hold(
        &self,
        source: &Source,
        route: &Route,
        message: Message,
    ) -> Result<Delivered, DeliveryError> {
        let Some(spool) = &self.spool else {
            return Err(DeliveryError::Spool(SpoolError::Storage("delivery.mode is off".into())));
        };
        spool.insert(self.record(source, route, message, 0, None), now_ms()).await?;
        Ok(Delivered::Spooled)
    }

    async fn run(
        &self,
        route: &Route,
        message: &mut Message,
        next_step: &mut usize,
        deadline: Instant,
    ) -> Run {
        let run =
            AssertUnwindSafe(route.pipeline.run(message, next_step, self.backend.as_ref())).catch_unwind();
        match tokio::time::timeout_at(deadline, run).await {
            Ok(Ok(Ok(finished))) => Run::Finished(finished),
            Ok(Ok(Err(failure))) => Run::Failed(failure),
            Ok(Err(_panic)) => {
                tracing::error!(route = %route.name, step = *next_step, "a step panicked");
                Run::Panicked
            }
            Err(_elapsed) => Run::OutOfTime,
        }
    }

    async fn inline_only(
        &self,
        route: &Route,
        mut message: Message,
        deadline: Instant,
    ) -> Result<Delivered, DeliveryError> {
        let mut next_step = 0;
        match self.run(route, &mut message, &mut next_step, deadline).await {
            Run::Finished(finished) => Ok(delivered(finished)),
            Run::Failed(failure) => Err(refusal(failure, &route.name)),
            Run::OutOfTime => {
                tracing::warn!(route = %route.name, step = next_step, "time budget ran out");
                Err(DeliveryError::Unavailable)
            }
            Run::Panicked => Err(DeliveryError::Panicked),
        }
    }

    async fn inline_then_spool(
        &self,
        spool: &Spool,
        source: &Source,
        route: &Route,
        mut message: Message,
        deadline: Instant,
    ) -> Result<Delivered, DeliveryError> {
        let mut next_step = 0;
        let outcome = self.run(route, &mut message, &mut next_step, deadline).await;
        let ran = Ran { source, route, message, next_step, written: None };
        self.settle(spool, ran, outcome).await
    }

    async fn write_ahead(
        &self,
        spool: &Spool,
        source: &Source,
        route: &Route,
        mut message: Message,
        deadline: Instant,
    ) -> Result<Delivered, DeliveryError> {
        let record = self.record(source, route, message.clone(), 0, None);
        let key = spool.insert(record, now_ms() + self.lease.as_millis() as u64).await?;
        // Held until this request is done with the record, so the background worker leaves it
        // alone; the lease covers a crash, when the claim is gone but the record is not.
        let _claim = spool.claim(key.1);
        let mut next_step = 0;
        let outcome = self.run(route, &mut message, &mut next_step, deadline).await;
        let ran = Ran { source, route, message, next_step, written: Some(key) };
        self.settle(spool, ran, outcome).await
    }

    /// Acts on how an inline run ended: done, kept for a retry, kept as a dead letter, or
    /// refused. The record written ahead, if any, is updated or removed to match.
    async fn settle(&self, spool: &Spool, ran: Ran<'_>, outcome: Run) -> Result<Delivered, DeliveryError> {
        let keep = |error: String| {
            self.record(ran.source, ran.route, ran.message.clone(), ran.next_step, Some(error))
        };
        match outcome {
            Run::Finished(finished) => {
                if let Some(key) = ran.written
                    && let Err(error) = spool.remove(key).await
                {
                    // The event is done; answering otherwise would make Momento's record wrong.
                    // Its record stays and is run again after the lease: at least once.
                    tracing::error!(%error, "a delivered event could not be removed from the spool");
                }
                Ok(delivered(finished))
            }
            Run::Failed(failure) if failure.error.is_retryable() => {
                self.keep_for_retry(spool, ran.written, keep(failure.error.to_string())).await
            }
            Run::Failed(failure @ StepFailure { error: StepError::Backend(_), .. }) => {
                let reason =
                    format!("step {} ({}) failed for good: {}", failure.step, failure.kind, failure.error);
                self.bury(spool, ran.written, keep(failure.error.to_string()), reason).await?;
                Ok(Delivered::DeadLettered)
            }
            Run::Failed(failure) => {
                if let Some(key) = ran.written {
                    spool.remove(key).await?;
                }
                Err(refusal(failure, &ran.route.name))
            }
            Run::OutOfTime => {
                self.keep_for_retry(spool, ran.written, keep("the time budget ran out".into())).await
            }
            Run::Panicked => {
                let reason = format!("step {} of route `{}` panicked", ran.next_step, ran.route.name);
                self.bury(spool, ran.written, keep("a step panicked".into()), reason).await?;
                Ok(Delivered::DeadLettered)
            }
        }
    }

    /// Keeps an unfinished event for a background retry: a new record, or the one written
    /// ahead, moved to its retry time.
    async fn keep_for_retry(
        &self,
        spool: &Spool,
        written: Option<EventKey>,
        event: SpooledEvent,
    ) -> Result<Delivered, DeliveryError> {
        let due = now_ms() + self.backoff.delay_ms(1);
        match written {
            Some(key) => spool.reschedule(key, event, due).await?,
            None => spool.insert(event, due).await?,
        };
        Ok(Delivered::Spooled)
    }

    fn record(
        &self,
        source: &Source,
        route: &Route,
        message: Message,
        next_step: usize,
        error: Option<String>,
    ) -> SpooledEvent {
        SpooledEvent {
            source: source.to_string(),
            route: route.name.to_string(),
            message,
            next_step,
            attempts: u32::from(error.is_some()),
            received_ms: now_ms(),
            last_error: error,
        }
    }

    /// Makes `event` a dead letter (taking it out of the pending events when `key` is
    /// given), and publishes it to the dead-letter topic when one is configured.
    pub async fn bury(
        &self,
        spool: &Spool,
        key: Option<EventKey>,
        event: SpooledEvent,
        reason: String,
    ) -> Result<u64, SpoolError> {
        tracing::warn!(
            route = event.route,
            attempts = event.attempts,
            reason,
            "event moved to the dead letters"
        );
        let letter = DeadLetter { event, dead_at_ms: now_ms(), reason };
        let id = spool.bury(key, letter.clone()).await?;
        if let Some(topic) = self.dead_letter_topic.clone() {
            let notice =
                serde_json::json!({ "id": id, "reason": letter.reason, "event": letter.event }).to_string();
            let backend = self.backend.clone();
            // In the background: the dead letter is already safe, and the request that made it
            // must not wait on a backend that may be the reason it failed.
            tokio::spawn(async move {
                if let Err(error) = backend.publish(&topic.cache, &topic.topic, &notice).await {
                    tracing::warn!(%error, "could not publish the dead letter notice; it is kept in the spool");
                }
            });
        }
        Ok(id)
    }

    /// The wait before background attempt number `attempt`.
    pub fn retry_delay_ms(&self, attempt: u32) -> u64 {
        self.backoff.delay_ms(attempt)
    }

    /// The backend events are delivered through.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }
}

fn delivered(finished: Finished) -> Delivered {
    match finished {
        Finished::Completed => Delivered::Processed,
        Finished::Dropped { reason, .. } => Delivered::Dropped { reason },
    }
}

fn refusal(failure: StepFailure, route: &str) -> DeliveryError {
    tracing::warn!(route, step = failure.step, kind = failure.kind, error = %failure.error, "step failed");
    match failure.error {
        StepError::Rejected(reason) => DeliveryError::Rejected(reason),
        ref error if error.is_retryable() => DeliveryError::Unavailable,
        _ => DeliveryError::Failed(failure),
    }
}
