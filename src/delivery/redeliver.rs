//! Background redelivery: picks spooled events when they are due, resumes each at the step
//! that failed, and removes it once done. An event that keeps failing becomes a dead letter
//! after `max_attempts` attempts or `dead_letter_after`, whichever comes first.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::DeliverySettings;
use super::record::SpooledEvent;
use super::spool::{Claim, EventKey, Spool, SpoolError};
use super::{Delivery, Sorted, Stop};
use crate::common::now_ms;
use crate::metrics::Metrics;
use crate::pipeline::{Branch, Ended, Run as Work, StepError};
use crate::route::LiveRoutes;

/// How often the spool is checked for due events.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// A background attempt that takes longer than this is abandoned and retried later.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// When an event stops being retried.
#[derive(Debug, Clone, Copy)]
struct GiveUp {
    /// After this many attempts.
    max_attempts: u32,
    /// Or once it is this old.
    after: Duration,
}

/// The background redelivery worker.
pub struct Redeliverer {
    delivery: Arc<Delivery>,
    spool: Spool,
    routes: LiveRoutes,
    give_up: GiveUp,
    concurrency: usize,
    metrics: Arc<Metrics>,
}

/// What one attempt did, for the counters.
enum Attempt {
    Delivered,
    Refused,
    Rescheduled,
    Buried,
}

impl Redeliverer {
    /// A worker over `spool`, with the limits of `[delivery]`.
    pub fn new(
        settings: &DeliverySettings,
        delivery: Arc<Delivery>,
        spool: Spool,
        routes: LiveRoutes,
        metrics: Arc<Metrics>,
    ) -> Self {
        let give_up = GiveUp { max_attempts: settings.max_attempts, after: settings.dead_letter_after };
        Redeliverer {
            delivery,
            spool,
            routes,
            give_up,
            concurrency: settings.redelivery_concurrency,
            metrics,
        }
    }

    /// Works until `stop` is cancelled, then waits for the attempts under way. Dropping the
    /// returned future (or aborting its task) abandons them; they resume at the next start.
    pub async fn run(self, stop: CancellationToken) {
        let worker = Arc::new(self);
        let mut running: JoinSet<()> = JoinSet::new();
        loop {
            let free = worker.concurrency.saturating_sub(running.len());
            if free > 0 {
                worker.start_due(free, &mut running);
            }
            tokio::select! {
                () = stop.cancelled() => break,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
        while running.join_next().await.is_some() {}
    }

    fn start_due(self: &Arc<Self>, free: usize, running: &mut JoinSet<()>) {
        let due = match self.spool.due(now_ms(), free) {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "cannot read the spool");
                return;
            }
        };
        for (key, event) in due {
            let Some(claim) = self.spool.claim(key.1) else { continue };
            let worker = self.clone();
            running.spawn(async move { worker.attempt(key, event, claim).await });
        }
    }

    async fn attempt(&self, key: EventKey, event: SpooledEvent, _claim: Claim) {
        let kept = event.clone();
        let outcome = match AssertUnwindSafe(self.try_event(key, event)).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(_panic) => {
                let reason = format!("a step of route `{}` panicked", kept.route);
                let kept = SpooledEvent {
                    attempts: kept.attempts + 1,
                    last_error: Some("a step panicked".into()),
                    ..kept
                };
                self.bury(key, kept, reason).await
            }
        };
        let label = match outcome {
            Ok(Attempt::Delivered) => "redelivered",
            Ok(Attempt::Refused) => "refused",
            Ok(Attempt::Rescheduled) => "retry_scheduled",
            Ok(Attempt::Buried) => "dead_lettered",
            Err(error) => {
                tracing::error!(%error, "could not record the outcome of a redelivery; it will be retried");
                return;
            }
        };
        self.metrics.redelivery.increment(label);
    }

    async fn try_event(&self, key: EventKey, mut event: SpooledEvent) -> Result<Attempt, SpoolError> {
        // The routes in force now: an event spooled before a reload resumes under the route
        // of the same name, as it would after a restart.
        let routes = self.routes.load_full();
        let Some(route) = routes.by_name(&event.route) else {
            let reason = format!("route `{}` is no longer configured", event.route);
            return self.bury(key, event, reason).await;
        };
        if event.next_step > route.pipeline.len() {
            let reason = format!("route `{}` has fewer steps than when the event was spooled", event.route);
            return self.bury(key, event, reason).await;
        }
        let mut work = Work::new(event.message.clone(), event.next_step, event.branch.clone());
        let run = route.pipeline.run(&mut work, self.delivery.backend());
        let timed_out = tokio::time::timeout(ATTEMPT_TIMEOUT, run).await.is_err();
        event.attempts += 1;
        let mut branches = work.into_branches(route.pipeline.max_branches());
        if branches.len() > 1 {
            return self.settle_branches(key, event, branches, timed_out).await;
        }
        let mut branch = branches.pop().expect("a run keeps at least one branch");
        event.message = branch.message;
        event.next_step = branch.next_step;
        event.branch = branch.path;
        match branch.ended.take() {
            Some(Ended::Completed | Ended::Dropped { .. }) => {
                crate::info_throttled!(route = %route.name, attempts = event.attempts, "spooled event delivered");
                self.spool.remove(key).await?;
                Ok(Attempt::Delivered)
            }
            Some(Ended::Failed(failure)) => match failure.error {
                // A refusal on purpose ends the event here, as it would have been answered
                // 403 inline.
                StepError::Rejected(reason) => {
                    crate::warn_throttled!(route = %route.name, step = failure.step, reason, "a step refused a spooled event; it is discarded");
                    self.spool.remove(key).await?;
                    Ok(Attempt::Refused)
                }
                ref error if error.is_retryable() => {
                    let cause = format!("step {} ({}): {error}", failure.step, failure.kind);
                    event.last_error =
                        Some(format!("step {} ({}): {}", failure.step, failure.kind, error.detail()));
                    self.retry_or_bury(key, event, &cause, error.retry_after()).await
                }
                error => {
                    let reason = format!("step {} ({}) failed for good: {error}", failure.step, failure.kind);
                    event.last_error = Some(error.detail());
                    self.bury(key, event, reason).await
                }
            },
            None => {
                let cause = format!("the attempt took longer than {ATTEMPT_TIMEOUT:?}");
                event.last_error = Some(cause.clone());
                self.retry_or_bury(key, event, &cause, None).await
            }
        }
    }

    /// Replaces the record of an event that fanned out during this attempt with its
    /// unfinished branches, each kept to resume where it stopped or buried when it failed for
    /// good or ran out of attempts.
    async fn settle_branches(
        &self,
        key: EventKey,
        event: SpooledEvent,
        branches: Vec<Branch>,
        timed_out: bool,
    ) -> Result<Attempt, SpoolError> {
        let stop = if timed_out { Stop::OutOfTime } else { Stop::Ended };
        let mut sorted = Sorted::of(branches, &stop, &event.route, |branch, error| SpooledEvent {
            message: branch.message,
            next_step: branch.next_step,
            branch: branch.path,
            last_error: Some(error),
            ..event.clone()
        });
        let (retry, spent): (Vec<_>, Vec<_>) =
            sorted.retry.drain(..).partition(|(branch, cause)| self.give_up_reason(branch, cause).is_none());
        for (branch, cause) in spent {
            let reason = self.give_up_reason(&branch, &cause).unwrap_or_default();
            sorted.bury.push((branch, reason));
        }
        sorted.retry = retry;
        let outcome = if sorted.retry.is_empty() && sorted.bury.is_empty() {
            Attempt::Delivered
        } else if sorted.retry.is_empty() {
            Attempt::Buried
        } else {
            Attempt::Rescheduled
        };
        let due = now_ms() + self.delivery.retry_delay_ms(event.attempts, sorted.retry_after);
        self.delivery.replace(&self.spool, Some(key), sorted, due).await?;
        Ok(outcome)
    }

    /// Why an event that failed again with `last_error` is given up, if it is.
    fn give_up_reason(&self, event: &SpooledEvent, last_error: &str) -> Option<String> {
        let age = Duration::from_millis(now_ms().saturating_sub(event.received_ms));
        if event.attempts >= self.give_up.max_attempts {
            return Some(format!("gave up after {} attempts; last error: {last_error}", event.attempts));
        }
        if age >= self.give_up.after {
            return Some(format!(
                "gave up after {}; last error: {last_error}",
                humantime::format_duration(age)
            ));
        }
        None
    }

    /// `cause` says what went wrong without quoting the event, for the reason of a dead letter,
    /// which is logged.
    async fn retry_or_bury(
        &self,
        key: EventKey,
        event: SpooledEvent,
        cause: &str,
        wait: Option<Duration>,
    ) -> Result<Attempt, SpoolError> {
        if let Some(reason) = self.give_up_reason(&event, cause) {
            return self.bury(key, event, reason).await;
        }
        let last_error = event.last_error.clone().unwrap_or_default();
        let due = now_ms() + self.delivery.retry_delay_ms(event.attempts, wait);
        tracing::debug!(
            route = event.route,
            attempts = event.attempts,
            error = last_error,
            "spooled event will be retried"
        );
        self.spool.reschedule(key, event, due).await?;
        Ok(Attempt::Rescheduled)
    }

    async fn bury(&self, key: EventKey, event: SpooledEvent, reason: String) -> Result<Attempt, SpoolError> {
        self.delivery.bury(&self.spool, Some(key), event, reason).await?;
        Ok(Attempt::Buried)
    }
}
