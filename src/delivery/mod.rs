//! Stage 5 of the flow, delivery: run a route's steps within the time budget, and keep
//! whatever cannot finish in the durable spool until it can. An event answered 2xx is either
//! done or safely on disk.

pub mod backoff;
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
use crate::event::Message;
use crate::event::Source;
use crate::pipeline::{Branch, Ended, Run as Work, StepError, StepFailure};
use crate::route::Route;
use backoff::Backoff;
use record::{DeadLetter, SpooledEvent};
pub use settings::{DedupMode, DeliveryMode, DeliverySettings, TopicAddress};
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
    path: Vec<u32>,
    written: Option<EventKey>,
}

/// How an event's run ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Finished {
    /// Every step ran.
    Completed,
    /// A step dropped the message.
    Dropped { reason: String },
}

/// How one inline run of a route's steps ended, for an event that did not fan out.
enum Run {
    Finished(Finished),
    Failed(StepFailure),
    OutOfTime,
    /// A step panicked (a bug); the event is kept as it was before that step.
    Panicked,
}

/// Why a run stopped.
enum Stop {
    /// Every branch ended.
    Ended,
    /// The time budget ran out; unfinished branches resume later.
    OutOfTime,
    /// A step panicked (a bug); unfinished branches are kept as they were before their step.
    Panicked,
}

/// An event that fanned out, sorted by what becomes of each branch.
#[derive(Default)]
pub(crate) struct Sorted {
    /// Branches to run again later, as their records, each with what went wrong in words
    /// safe to log.
    pub retry: Vec<(SpooledEvent, String)>,
    /// Branches that failed for good, with the reason.
    pub bury: Vec<(SpooledEvent, String)>,
    /// Why the first dropped branch was dropped.
    pub dropped: Option<String>,
    /// Branches that ran every step.
    pub completed: usize,
    /// The longest wait a failed service asked for.
    pub retry_after: Option<Duration>,
}

impl Sorted {
    /// Sorts the branches of a run that stopped with `stop`. `record` makes a branch's spool
    /// record from its message, next step, path and last error.
    fn of(
        branches: Vec<Branch>,
        stop: &Stop,
        route: &str,
        record: impl Fn(Branch, String) -> SpooledEvent,
    ) -> Sorted {
        let mut sorted = Sorted::default();
        for mut branch in branches {
            match (branch.ended.take(), stop) {
                (Some(Ended::Completed), _) => sorted.completed += 1,
                (Some(Ended::Dropped { reason, .. }), _) => {
                    sorted.dropped.get_or_insert(reason);
                }
                (None, Stop::Panicked) => {
                    let reason = format!("a step of route `{route}` panicked while this branch ran");
                    sorted.bury.push((record(branch, "a step panicked".into()), reason));
                }
                (None, _) => {
                    let cause = "the time budget ran out".to_owned();
                    sorted.retry.push((record(branch, cause.clone()), cause));
                }
                (Some(Ended::Failed(failure)), _) => match failure.error {
                    // Other branches have had their effects, so the event is not refused; the
                    // refused branch ends here, as a refused spooled event does.
                    StepError::Rejected(reason) => {
                        tracing::debug!(
                            route,
                            step = failure.step,
                            reason,
                            "a step refused one branch of an event"
                        );
                    }
                    ref error if error.is_retryable() => {
                        sorted.retry_after = sorted.retry_after.max(error.retry_after());
                        let cause = format!("step {} ({}): {error}", failure.step, failure.kind);
                        let kept = format!("step {} ({}): {}", failure.step, failure.kind, error.detail());
                        sorted.retry.push((record(branch, kept), cause));
                    }
                    error => {
                        let reason =
                            format!("step {} ({}) failed for good: {error}", failure.step, failure.kind);
                        sorted.bury.push((record(branch, error.detail()), reason));
                    }
                },
            }
        }
        sorted
    }

    /// What the relay answers for the event.
    fn delivered(&self) -> Delivered {
        if !self.retry.is_empty() {
            Delivered::Spooled
        } else if !self.bury.is_empty() {
            Delivered::DeadLettered
        } else if let (0, Some(reason)) = (self.completed, &self.dropped) {
            Delivered::Dropped { reason: reason.clone() }
        } else {
            Delivered::Processed
        }
    }
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

    /// Acts on how an event that fanned out ended, branch by branch: those that failed for a
    /// while are kept to resume where they stopped, those that failed for good become dead
    /// letters. One spool change replaces the record written ahead, if any, with all of them.
    async fn settle_branches(
        &self,
        spool: &Spool,
        source: &Source,
        route: &Route,
        written: Option<EventKey>,
        branches: Vec<Branch>,
        stop: Stop,
    ) -> Result<Delivered, DeliveryError> {
        let sorted = Sorted::of(branches, &stop, &route.name, |branch, error| {
            self.record(source, route, branch.message, branch.next_step, branch.path, Some(error))
        });
        let answer = sorted.delivered();
        let due = now_ms() + self.retry_delay_ms(1, sorted.retry_after);
        self.replace(spool, written, sorted, due).await?;
        Ok(answer)
    }

    /// Replaces the record under `key` (if any) with the branches `sorted` keeps, in one spool
    /// change, and sends a notice for each new dead letter.
    pub(crate) async fn replace(
        &self,
        spool: &Spool,
        key: Option<EventKey>,
        sorted: Sorted,
        due_ms: u64,
    ) -> Result<(), SpoolError> {
        let now = now_ms();
        let letters: Vec<DeadLetter> = sorted
            .bury
            .into_iter()
            .map(|(event, reason)| {
                crate::warn_throttled!(route = event.route, branch = ?event.branch, reason, "event branch moved to the dead letters");
                DeadLetter { event, dead_at_ms: now, reason }
            })
            .collect();
        let retry = sorted.retry.into_iter().map(|(event, _)| (event, due_ms)).collect();
        let first_id = spool.replace(key, retry, letters.clone()).await?;
        for (offset, letter) in letters.into_iter().enumerate() {
            self.notify_dead_letter(first_id + offset as u64, letter);
        }
        Ok(())
    }

    /// Acts on how an inline run ended: done, kept for a retry, kept as a dead letter, or
    /// refused. The record written ahead, if any, is updated or removed to match.
    async fn settle(&self, spool: &Spool, ran: Ran<'_>, outcome: Run) -> Result<Delivered, DeliveryError> {
        let keep = |error: String| {
            let path = ran.path.clone();
            self.record(ran.source, ran.route, ran.message.clone(), ran.next_step, path, Some(error))
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
                let wait = failure.error.retry_after();
                self.keep_for_retry(spool, ran.written, keep(failure.error.detail()), wait).await
            }
            Run::Failed(failure) if failure.error.keeps_dead_letter() => {
                let reason =
                    format!("step {} ({}) failed for good: {}", failure.step, failure.kind, failure.error);
                self.bury(spool, ran.written, keep(failure.error.detail()), reason).await?;
                Ok(Delivered::DeadLettered)
            }
            Run::Failed(failure) => {
                if let Some(key) = ran.written {
                    spool.remove(key).await?;
                }
                Err(refusal(failure, &ran.route.name))
            }
            Run::OutOfTime => {
                self.keep_for_retry(spool, ran.written, keep("the time budget ran out".into()), None).await
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
        wait: Option<Duration>,
    ) -> Result<Delivered, DeliveryError> {
        let due = now_ms() + self.retry_delay_ms(1, wait);
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
        branch: Vec<u32>,
        error: Option<String>,
    ) -> SpooledEvent {
        SpooledEvent {
            source: source.to_string(),
            route: route.name.to_string(),
            message,
            next_step,
            branch,
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
        crate::warn_throttled!(
            route = event.route,
            attempts = event.attempts,
            reason,
            "event moved to the dead letters"
        );
        let letter = DeadLetter { event, dead_at_ms: now_ms(), reason };
        let id = spool.bury(key, letter.clone()).await?;
        self.notify_dead_letter(id, letter);
        Ok(id)
    }

    /// Publishes a new dead letter to the dead-letter topic, when one is configured.
    fn notify_dead_letter(&self, id: u64, letter: DeadLetter) {
        let Some(topic) = self.dead_letter_topic.clone() else { return };
        let notice =
            serde_json::json!({ "id": id, "reason": letter.reason, "event": letter.event }).to_string();
        let backend = self.backend.clone();
        // In the background: the dead letter is already safe, and the request that made it
        // must not wait on a backend that may be the reason it failed.
        tokio::spawn(async move {
            if let Err(error) = backend.publish(&topic.cache, &topic.topic, &notice).await {
                crate::warn_throttled!(%error, "could not publish the dead letter notice; it is kept in the spool");
            }
        });
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

impl<'a> Ran<'a> {
    fn of(source: &'a Source, route: &'a Route, branch: Branch, written: Option<EventKey>) -> Self {
        let Branch { message, next_step, path, .. } = branch;
        Ran { source, route, message, next_step, path, written }
    }
}

fn delivered(finished: Finished) -> Delivered {
    match finished {
        Finished::Completed => Delivered::Processed,
        Finished::Dropped { reason } => Delivered::Dropped { reason },
    }
}

fn refusal(failure: StepFailure, route: &str) -> DeliveryError {
    match failure.error {
        // A refusal is the route doing what it was configured to do: counted, not a fault.
        StepError::Rejected(reason) => {
            tracing::debug!(
                route,
                step = failure.step,
                kind = failure.kind,
                reason,
                "a step refused the event"
            );
            DeliveryError::Rejected(reason)
        }
        ref error => {
            crate::warn_throttled!(route, step = failure.step, kind = failure.kind, %error, "step failed");
            if error.is_retryable() { DeliveryError::Unavailable } else { DeliveryError::Failed(failure) }
        }
    }
}
