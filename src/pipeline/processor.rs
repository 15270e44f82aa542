//! The extension point: a [`Processor`] takes a message and changes it, drops it, or fails.
//! Built-in steps implement it; so can yours (see `ProcessorRegistry::register`).

use std::borrow::Cow;

use async_trait::async_trait;

use crate::backend::{Backend, BackendError};
use crate::event::Message;

/// What a step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Go on to the next step with the (possibly changed) message.
    Continue,
    /// Stop here; the event is handled and nothing more happens to it.
    Drop(Cow<'static, str>),
    /// Go on with these messages instead: each runs the steps after this one as a branch of
    /// its own. An empty list ends the branch, like a drop.
    FanOut(Vec<Message>),
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A backend call failed; retryable or not, as the backend error says.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The step refuses the event on purpose, such as an unknown user (`on_miss = "reject"`).
    #[error("{0}")]
    Rejected(String),
    /// The step cannot process this message now or ever, such as text that is not JSON
    /// under `on_invalid = "fail"`.
    #[error("{0}")]
    Failed(String),
    /// A script threw, ran past its time limit or out of memory.
    #[error("{message}")]
    Script {
        /// What happened, safe to log.
        message: String,
        /// What the script threw, which may quote the message: kept with the event, never
        /// logged.
        detail: Option<String>,
    },
    /// A call to another service failed, such as an `http` step's request.
    #[error("{message}")]
    Call {
        /// What happened, safe to log: no secrets and nothing the service said.
        message: String,
        /// A short, scrubbed excerpt of the reply, which may quote the message: kept with the
        /// event, never logged.
        detail: Option<String>,
        /// Whether the same call may succeed later (a timeout, a 503).
        retryable: bool,
        /// How long the service asked to be left alone (`Retry-After`).
        retry_after: Option<std::time::Duration>,
    },
}

impl StepError {
    /// Whether trying the same step again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StepError::Backend(error) => error.is_retryable(),
            StepError::Call { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// Whether an event that failed this way for good is kept as a dead letter rather than
    /// refused: the failure lies with a service, not with the event.
    pub fn keeps_dead_letter(&self) -> bool {
        matches!(self, StepError::Backend(_) | StepError::Call { .. } | StepError::Script { .. })
    }

    /// The whole error, for the event's record and its dead letter. Its `Display` is the
    /// part that is safe to log, without what a script threw or a service answered.
    pub fn detail(&self) -> String {
        match self {
            StepError::Call { message, detail: Some(detail), .. }
            | StepError::Script { message, detail: Some(detail) } => format!("{message}: {detail}"),
            other => other.to_string(),
        }
    }

    /// The least wait before the step is tried again, when the service named one.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            StepError::Call { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What a step can reach while it runs.
pub struct StepContext<'a> {
    /// Momento, or the embedded backend.
    pub backend: &'a dyn Backend,
    /// Name of the route the step belongs to, for log lines.
    pub route: &'a str,
}

/// One processing step.
///
/// A step may be abandoned at any `.await` (when the request's time budget runs out) and
/// later run again on the message as it was before the step began, so change `message`
/// only after the step's last `.await`.
#[async_trait]
pub trait Processor: Send + Sync {
    /// Processes `message` in place.
    async fn process(&self, message: &mut Message, context: &StepContext<'_>) -> Result<Flow, StepError>;
}
