//! Stage 4, pipeline: a route's steps, run in order over one message.

mod branch;
mod processor;
pub mod template;

use std::sync::Arc;

pub use branch::{Branch, Ended, Run};
pub use processor::{Flow, Processor, StepContext, StepError};

use crate::backend::Backend;
use crate::metrics::{Histogram, Metrics};

/// One configured step: its kind (for logs) and the processor that does the work.
#[derive(Clone)]
pub struct Step {
    /// The step kind as configured, such as `publish`.
    pub kind: String,
    /// The implementation.
    pub processor: Arc<dyn Processor>,
    /// Where its durations go, once the relay's metrics are wired in.
    pub duration: Option<Histogram>,
}

/// A step failed; `step` is its index, so a later attempt can resume there.
#[derive(Debug)]
pub struct StepFailure {
    /// Index of the failed step.
    pub step: usize,
    /// Its kind, for log lines.
    pub kind: String,
    /// What went wrong.
    pub error: StepError,
}

/// Branches one event may fan out into, unless a route says otherwise.
pub const DEFAULT_MAX_BRANCHES: usize = 64;

/// The steps of one route.
#[derive(Clone)]
pub struct Pipeline {
    route: Arc<str>,
    steps: Vec<Step>,
    max_branches: usize,
}

impl Pipeline {
    /// A pipeline for `route` made of `steps`, whose events may fan out into at most
    /// `max_branches` branches.
    pub fn new(route: &str, steps: Vec<Step>, max_branches: usize) -> Self {
        Pipeline { route: route.into(), steps, max_branches }
    }

    /// Branches one event may fan out into.
    pub fn max_branches(&self) -> usize {
        self.max_branches
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True when the route has no steps (it only acknowledges).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Times every step from now on, in `topic_relay_step_duration_seconds{kind}`.
    pub fn time_steps(&mut self, metrics: &Metrics) {
        for step in &mut self.steps {
            step.duration = Some(metrics.step_duration(&step.kind));
        }
    }

    /// Runs every unfinished branch of `run` to its end. Branches run concurrently, each
    /// through its steps in order. `run` stays consistent if this future is dropped (the time
    /// budget ran out), so each branch resumes where it stopped and no branch repeats a step
    /// that succeeded on it.
    pub async fn run(&self, run: &mut Run, backend: &dyn Backend) {
        let context = StepContext { backend, route: &self.route };
        loop {
            run.apply_fan_outs(self.max_branches);
            let mut unfinished = run.unfinished();
            let Some(first) = unfinished.next() else { return };
            match unfinished.next() {
                // The usual case, an event that never fanned out: no allocation, no join.
                None => self.run_branch(first, &context).await,
                Some(second) => {
                    let each = [first, second].into_iter().chain(unfinished);
                    futures::future::join_all(each.map(|branch| self.run_branch(branch, &context))).await;
                }
            }
        }
    }

    /// Runs one branch until it ends or fans out. `branch.next_step` always names the step to
    /// run next, so if this future is dropped the branch resumes there.
    async fn run_branch(&self, branch: &mut Branch, context: &StepContext<'_>) {
        // Each step's end is the next one's start: one clock read per step.
        let mut started = std::time::Instant::now();
        let Some(step) = self.steps.get(branch.next_step) else {
            branch.ended = Some(Ended::Completed);
            return;
        };
        let mut step = step;
        loop {
            let flow = step.processor.process(&mut branch.message, context).await;
            let ended = std::time::Instant::now();
            if let Some(duration) = &step.duration {
                duration.observe_duration(ended - started);
            }
            started = ended;
            match flow {
                Ok(Flow::Continue) => branch.next_step += 1,
                Ok(Flow::Drop(reason)) => {
                    branch.ended =
                        Some(Ended::Dropped { step: branch.next_step, reason: reason.into_owned() });
                    return;
                }
                Ok(Flow::FanOut(children)) => {
                    branch.fanned_out = Some(children);
                    return;
                }
                Err(error) => {
                    let failure = StepFailure { step: branch.next_step, kind: step.kind.clone(), error };
                    branch.ended = Some(Ended::Failed(failure));
                    return;
                }
            }
            match self.steps.get(branch.next_step) {
                Some(next) => step = next,
                None => {
                    branch.ended = Some(Ended::Completed);
                    return;
                }
            }
        }
    }
}
