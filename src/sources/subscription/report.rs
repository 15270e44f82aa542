//! What `/v1/status` and `/readyz` see of each stream.

use serde::Serialize;

use crate::backend::Position;

/// Where a stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    /// Not started yet.
    Starting,
    /// Another replica owns the topic; this one tries to take the lease now and then.
    Standby,
    /// Owns the topic and is subscribing.
    Subscribing,
    /// Subscribed, taking items.
    Listening,
    /// The last attempt to subscribe, or to take the topic's lease, failed (see
    /// `last_error`).
    Failing,
    /// The relay is shutting down.
    Stopped,
}

/// One stream, as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// The subscription's name.
    pub subscription: String,
    /// The topic.
    pub topic: String,
    /// Where it stands.
    pub state: StreamState,
    /// Whether this replica owns the topic.
    pub owned: bool,
    /// The first item it would ask for if it subscribed now: its checkpoint.
    pub resume_at: Option<Position>,
    /// Why the last attempt to subscribe failed, or why the last stream broke or stalled,
    /// while it keeps failing.
    pub last_error: Option<String>,
    /// Attempts to subscribe that failed in a row, a stall or a stream that broke at once
    /// included; 0 once a stream brings an item.
    pub failed_attempts: u32,
    /// When the last heartbeat arrived, in ms since the epoch.
    pub last_heartbeat_ms: Option<u64>,
    /// Streams opened again because they brought nothing, not even a heartbeat, for
    /// `stall_after`.
    pub stalls: u64,
    /// Discontinuities the service reported on the same page: items skipped, often because
    /// the relay fell behind.
    pub discontinuities: u64,
    /// Items those discontinuities skipped.
    pub items_skipped: u64,
    /// Times the topic's numbering started afresh on a new page (a topic reset, not a loss).
    pub page_changes: u64,
}

impl StreamReport {
    /// A stream not started yet.
    pub fn starting(subscription: &str, topic: &str) -> Self {
        StreamReport {
            subscription: subscription.to_owned(),
            topic: topic.to_owned(),
            state: StreamState::Starting,
            owned: false,
            resume_at: None,
            last_error: None,
            failed_attempts: 0,
            last_heartbeat_ms: None,
            stalls: 0,
            discontinuities: 0,
            items_skipped: 0,
            page_changes: 0,
        }
    }
}
