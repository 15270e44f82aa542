//! Stage 5 of the flow, delivery: run a route's steps within the time budget, and keep
//! whatever cannot finish in the durable spool until it can. An event answered 2xx is either
//! done or safely on disk.

pub mod backoff;
mod keeping;
mod outcome;
pub mod record;
pub mod redeliver;
mod settings;
pub mod spool;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use tokio::time::Instant;

use crate::backend::Backend;
use crate::common::now_ms;
use crate::event::{Message, Source};
use crate::pipeline::{Branch, Ended, Run as Work, StepFailure};
use crate::route::Route;
use backoff::Backoff;
pub(crate) use outcome::Sorted;
use outcome::{Finished, Ran, Run, Stop, delivered, refusal};
pub use settings::{DedupMode, DeliveryMode, DeliverySettings, TopicAddress};
use spool::{Spool, SpoolError};

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
        spool.insert(self.record(source, route, message, 0, Vec::new(), None), now_ms()).await?;
        Ok(Delivered::Spooled)
    }

    async fn run(&self, route: &Route, work: &mut Work, deadline: Instant) -> Stop {
        let run = AssertUnwindSafe(route.pipeline.run(work, self.backend.as_ref())).catch_unwind();
        match tokio::time::timeout_at(deadline, run).await {
            Ok(Ok(())) => Stop::Ended,
            Ok(Err(_panic)) => {
                tracing::error!(route = %route.name, "a step panicked");
                Stop::Panicked
            }
            Err(_elapsed) => Stop::OutOfTime,
        }
    }

    /// Runs `message` inline, then reads how it ended: as one branch (the event did not fan
    /// out), or as several.
    async fn run_inline(
        &self,
        route: &Route,
        message: Message,
        deadline: Instant,
    ) -> Result<(Branch, Run), (Vec<Branch>, Stop)> {
        let mut work = Work::new(message, 0, Vec::new());
        let stop = self.run(route, &mut work, deadline).await;
        let mut branches = work.into_branches(route.pipeline.max_branches());
        if branches.len() > 1 {
            return Err((branches, stop));
        }
        let mut branch = branches.pop().expect("a run keeps at least one branch");
        let run = match (stop, branch.ended.take()) {
            (Stop::Panicked, _) => Run::Panicked,
            (_, Some(Ended::Completed)) => Run::Finished(Finished::Completed),
            (_, Some(Ended::Dropped { reason, .. })) => Run::Finished(Finished::Dropped { reason }),
            (_, Some(Ended::Failed(failure))) => Run::Failed(failure),
            (_, None) => Run::OutOfTime,
        };
        Ok((branch, run))
    }

    async fn inline_only(
        &self,
        route: &Route,
        message: Message,
        deadline: Instant,
    ) -> Result<Delivered, DeliveryError> {
        let (branch, run) = match self.run_inline(route, message, deadline).await {
            Ok(single) => single,
            // Without a spool nothing can be kept: the first branch that did not end well
            // decides the answer.
            Err((branches, stop)) => {
                let failed = branches.into_iter().find_map(|branch| match branch.ended {
                    Some(Ended::Failed(failure)) => Some(failure),
                    _ => None,
                });
                return match (stop, failed) {
                    (Stop::Panicked, _) => Err(DeliveryError::Panicked),
                    (_, Some(failure)) => Err(refusal(failure, &route.name)),
                    (Stop::OutOfTime, None) => Err(DeliveryError::Unavailable),
                    (Stop::Ended, None) => Ok(Delivered::Processed),
                };
            }
        };
        match run {
            Run::Finished(finished) => Ok(delivered(finished)),
            Run::Failed(failure) => Err(refusal(failure, &route.name)),
            Run::OutOfTime => {
                crate::warn_throttled!(route = %route.name, step = branch.next_step, "time budget ran out");
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
        message: Message,
        deadline: Instant,
    ) -> Result<Delivered, DeliveryError> {
        match self.run_inline(route, message, deadline).await {
            Ok((branch, run)) => {
                let ran = Ran::of(source, route, branch, None);
                self.settle(spool, ran, run).await
            }
            Err((branches, stop)) => self.settle_branches(spool, source, route, None, branches, stop).await,
        }
    }

    async fn write_ahead(
        &self,
        spool: &Spool,
        source: &Source,
        route: &Route,
        message: Message,
        deadline: Instant,
    ) -> Result<Delivered, DeliveryError> {
        let record = self.record(source, route, message.clone(), 0, Vec::new(), None);
        let key = spool.insert(record, now_ms() + self.lease.as_millis() as u64).await?;
        // Held until this request is done with the record, so the background worker leaves it
        // alone; the lease covers a crash, when the claim is gone but the record is not.
        let _claim = spool.claim(key.1);
        match self.run_inline(route, message, deadline).await {
            Ok((branch, run)) => {
                let ran = Ran::of(source, route, branch, Some(key));
                self.settle(spool, ran, run).await
            }
            Err((branches, stop)) => {
                self.settle_branches(spool, source, route, Some(key), branches, stop).await
            }
        }
    }

    /// The wait before background attempt number `attempt`: the backoff's, or `wait` when
    /// the failed service asked for longer (`Retry-After`).
    pub fn retry_delay_ms(&self, attempt: u32, wait: Option<Duration>) -> u64 {
        self.backoff.delay_ms(attempt).max(wait.map_or(0, |wait| wait.as_millis() as u64))
    }

    /// The backend events are delivered through.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }
}
