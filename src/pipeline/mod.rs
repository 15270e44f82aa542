//! Stage 4, pipeline: a route's steps, run in order over one message.

mod processor;
mod registry;
pub mod template;

use std::sync::Arc;

pub use processor::{Flow, Processor, StepContext, StepError};
pub use registry::{BuildContext, ProcessorFactory, ProcessorRegistry};

use crate::backend::Backend;
use crate::event::Message;
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

/// How a pipeline run ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Every step ran.
    Completed,
    /// A step dropped the message.
    Dropped {
        /// Index of the step that dropped it.
        step: usize,
        /// Why, as the step said.
        reason: String,
    },
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

/// The steps of one route.
#[derive(Clone)]
pub struct Pipeline {
    route: Arc<str>,
    steps: Vec<Step>,
}

impl Pipeline {
    /// A pipeline for `route` made of `steps`.
    pub fn new(route: &str, steps: Vec<Step>) -> Self {
        Pipeline { route: route.into(), steps }
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

    /// Runs the steps from `*next_step` on. `*next_step` always names the step to run next,
    /// so if this future is dropped (the time budget ran out) the caller knows where to
    /// resume, and steps that already succeeded are not repeated.
    pub async fn run(
        &self,
        message: &mut Message,
        next_step: &mut usize,
        backend: &dyn Backend,
    ) -> Result<Finished, StepFailure> {
        let context = StepContext { backend, route: &self.route };
        // Each step's end is the next one's start: one clock read per step.
        let mut started = std::time::Instant::now();
        while let Some(step) = self.steps.get(*next_step) {
            let flow = step.processor.process(message, &context).await;
            let ended = std::time::Instant::now();
            if let Some(duration) = &step.duration {
                duration.observe_duration(ended - started);
            }
            started = ended;
            match flow {
                Ok(Flow::Continue) => *next_step += 1,
                Ok(Flow::Drop(reason)) => {
                    return Ok(Finished::Dropped { step: *next_step, reason: reason.into_owned() });
                }
                Err(error) => {
                    return Err(StepFailure { step: *next_step, kind: step.kind.clone(), error });
                }
            }
        }
        Ok(Finished::Completed)
    }
}
