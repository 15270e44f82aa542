//! What is kept of an event that did not simply finish: a record to retry in the background,
//! moved to its retry time, or a dead letter (also published to the dead-letter topic); and
//! the write-ahead record of one that finished, removed.

use std::time::Duration;

use super::outcome::{Ran, Run, Sorted, Stop, delivered, refusal};
use super::record::{DeadLetter, SpooledEvent};
use super::spool::{EventKey, Spool, SpoolError};
use super::{Delivered, Delivery, DeliveryError};
use crate::common::now_ms;
use crate::event::{Message, Source};
use crate::pipeline::Branch;
use crate::route::Route;

impl Delivery {
    /// Acts on how an event that fanned out ended, branch by branch: those that failed for a
    /// while are kept to resume where they stopped, those that failed for good become dead
    /// letters. One spool change replaces the record written ahead, if any, with all of them.
    pub(super) async fn settle_branches(
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
    pub(super) async fn settle(
        &self,
        spool: &Spool,
        ran: Ran<'_>,
        outcome: Run,
    ) -> Result<Delivered, DeliveryError> {
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
    pub(super) async fn keep_for_retry(
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

    pub(super) fn record(
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
    pub(super) fn notify_dead_letter(&self, id: u64, letter: DeadLetter) {
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
}
