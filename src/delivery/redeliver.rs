//! Background redelivery: picks spooled events when they are due, resumes each at the step
//! that failed, and removes it once done. An event that keeps failing becomes a dead letter
//! after `max_attempts` attempts or `dead_letter_after`, whichever comes first.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Delivery;
use super::record::SpooledEvent;
use super::spool::{EventKey, Spool, SpoolError};
use crate::accept::now_ms;
use crate::metrics::Metrics;
use crate::pipeline::StepError;
use crate::route::RouteTable;

/// How often the spool is checked for due events.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// A background attempt that takes longer than this is abandoned and retried later.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// When an event stops being retried.
#[derive(Debug, Clone, Copy)]
pub struct GiveUp {
    /// After this many attempts.
    pub max_attempts: u32,
    /// Or once it is this old.
    pub after: Duration,
}

/// The background redelivery worker.
pub struct Redeliverer {
    delivery: Arc<Delivery>,
    spool: Spool,
    routes: RouteTable,
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
    /// A worker over `spool`, running up to `concurrency` events at once.
    pub fn new(
        delivery: Arc<Delivery>,
        spool: Spool,
        routes: RouteTable,
        give_up: GiveUp,
        concurrency: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Redeliverer { delivery, spool, routes, give_up, concurrency, metrics }
    }

    /// Works until `stop` is cancelled, then lets the attempts under way finish.
    pub async fn run(self, stop: CancellationToken) {
        let worker = Arc::new(self);
        let mut running: JoinSet<u64> = JoinSet::new();
        let mut in_progress: HashSet<u64> = HashSet::new();
        loop {
            let free = worker.concurrency.saturating_sub(running.len());
            if free > 0 {
                match worker.spool.due(now_ms(), free, &|id| in_progress.contains(&id)) {
                    Ok(due) => {
                        for (key, event) in due {
                            in_progress.insert(key.1);
                            let worker = worker.clone();
                            running.spawn(async move {
                                worker.attempt(key, event).await;
                                key.1
                            });
                        }
                    }
                    Err(error) => tracing::error!(%error, "cannot read the spool"),
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Ok(id) = done {
                        in_progress.remove(&id);
                    }
                }
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
        while running.join_next().await.is_some() {}
    }

    async fn attempt(&self, key: EventKey, event: SpooledEvent) {
        let outcome = match self.try_event(key, event).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::error!(%error, "could not record the outcome of a redelivery; it will be retried");
                return;
            }
        };
        let label = match outcome {
            Attempt::Delivered => "redelivered",
            Attempt::Refused => "refused",
            Attempt::Rescheduled => "retry_scheduled",
            Attempt::Buried => "dead_lettered",
        };
        self.metrics.delivery.increment(label);
    }

    async fn try_event(&self, key: EventKey, mut event: SpooledEvent) -> Result<Attempt, SpoolError> {
        let Some(route) = self.routes.by_name(&event.route) else {
            let reason = format!("route `{}` is no longer configured", event.route);
            return self.bury(key, event, reason).await;
        };
        if event.next_step > route.pipeline.len() {
            let reason = format!("route `{}` has fewer steps than when the event was spooled", event.route);
            return self.bury(key, event, reason).await;
        }
        let mut next_step = event.next_step;
        let run = route.pipeline.run(&mut event.message, &mut next_step, self.delivery.backend());
        let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, run).await;
        event.next_step = next_step;
        event.attempts += 1;
        match outcome {
            Ok(Ok(_finished)) => {
                tracing::info!(route = %route.name, attempts = event.attempts, "spooled event delivered");
                self.spool.remove(key).await?;
                Ok(Attempt::Delivered)
            }
            Ok(Err(failure)) if matches!(failure.error, StepError::Rejected(_) | StepError::Failed(_)) => {
                tracing::warn!(route = %route.name, step = failure.step, error = %failure.error, "a step refused a spooled event; it is discarded");
                self.spool.remove(key).await?;
                Ok(Attempt::Refused)
            }
            Ok(Err(failure)) if !failure.error.is_retryable() => {
                let reason =
                    format!("step {} ({}) failed for good: {}", failure.step, failure.kind, failure.error);
                event.last_error = Some(failure.error.to_string());
                self.bury(key, event, reason).await
            }
            Ok(Err(failure)) => {
                event.last_error =
                    Some(format!("step {} ({}): {}", failure.step, failure.kind, failure.error));
                self.retry_or_bury(key, event).await
            }
            Err(_elapsed) => {
                event.last_error = Some(format!("the attempt took longer than {ATTEMPT_TIMEOUT:?}"));
                self.retry_or_bury(key, event).await
            }
        }
    }

    async fn retry_or_bury(&self, key: EventKey, event: SpooledEvent) -> Result<Attempt, SpoolError> {
        let age = Duration::from_millis(now_ms().saturating_sub(event.received_ms));
        let last_error = event.last_error.clone().unwrap_or_default();
        if event.attempts >= self.give_up.max_attempts {
            let reason = format!("gave up after {} attempts; last error: {last_error}", event.attempts);
            return self.bury(key, event, reason).await;
        }
        if age >= self.give_up.after {
            let reason = format!("gave up after {age:?}; last error: {last_error}");
            return self.bury(key, event, reason).await;
        }
        let due = now_ms() + self.delivery.retry_delay_ms(event.attempts);
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
