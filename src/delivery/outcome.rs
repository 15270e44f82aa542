//! How a run of a route's steps ended, and what the relay answers for it: one branch or
//! several, finished, failed, out of time or panicked; and which branches of an event that
//! fanned out are retried, buried or done.

use std::time::Duration;

use super::record::SpooledEvent;
use super::spool::EventKey;
use super::{Delivered, DeliveryError};
use crate::event::{Message, Source};
use crate::pipeline::{Branch, Ended, StepError, StepFailure};
use crate::route::Route;

/// An event after its inline run: where it came from, how far it got, and its write-ahead
/// record, if it has one.
pub(super) struct Ran<'a> {
    pub source: &'a Source,
    pub route: &'a Route,
    pub message: Message,
    pub next_step: usize,
    pub path: Vec<u32>,
    pub written: Option<EventKey>,
}

/// How an event's run ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Finished {
    /// Every step ran.
    Completed,
    /// A step dropped the message.
    Dropped { reason: String },
}

/// How one inline run of a route's steps ended, for an event that did not fan out.
pub(super) enum Run {
    Finished(Finished),
    Failed(StepFailure),
    OutOfTime,
    /// A step panicked (a bug); the event is kept as it was before that step.
    Panicked,
}

/// Why a run stopped.
pub(super) enum Stop {
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
    pub(super) fn of(
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
    pub(super) fn delivered(&self) -> Delivered {
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

impl<'a> Ran<'a> {
    pub(super) fn of(
        source: &'a Source,
        route: &'a Route,
        branch: Branch,
        written: Option<EventKey>,
    ) -> Self {
        let Branch { message, next_step, path, .. } = branch;
        Ran { source, route, message, next_step, path, written }
    }
}

pub(super) fn delivered(finished: Finished) -> Delivered {
    match finished {
        Finished::Completed => Delivered::Processed,
        Finished::Dropped { reason } => Delivered::Dropped { reason },
    }
}

pub(super) fn refusal(failure: StepFailure, route: &str) -> DeliveryError {
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
