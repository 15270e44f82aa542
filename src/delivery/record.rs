//! What the spool stores: an event, the route it was on, and how far its steps got.

use serde::{Deserialize, Serialize};

use crate::event::Message;

/// An event waiting to be (re)delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpooledEvent {
    /// Where it came from, as `webhooks.<name>` or `subscriptions.<name>` (records written
    /// before subscriptions existed hold a webhook's bare name under `webhook`).
    #[serde(alias = "webhook")]
    pub source: String,
    /// The route whose steps it runs.
    pub route: String,
    /// The message as it was before `next_step`.
    pub message: Message,
    /// The step to run next; earlier steps succeeded and are not repeated.
    pub next_step: usize,
    /// Which branch of its event this is, when the event fanned out (see `pipeline::Branch`);
    /// empty for a whole event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branch: Vec<u32>,
    /// Attempts made so far, the inline one included.
    pub attempts: u32,
    /// When the relay received it, in ms since the epoch.
    pub received_ms: u64,
    /// What went wrong the last time.
    pub last_error: Option<String>,
}

/// An event the relay gave up retrying: kept, visible and replayable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The event, as it was when it was given up.
    pub event: SpooledEvent,
    /// When it became a dead letter, in ms since the epoch.
    pub dead_at_ms: u64,
    /// Why it was given up.
    pub reason: String,
}
