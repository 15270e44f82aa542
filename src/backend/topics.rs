//! What a topic subscription yields, whichever backend serves it, and the conditions a
//! conditional write can take.

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

/// A place in a topic's history: a sequence number on a sequence page. Momento numbers a
/// topic's items from 1; when it resets a topic's numbering it starts a new page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The sequence page.
    pub page: u64,
    /// The sequence number on that page.
    pub sequence: u64,
}

/// One item received on a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicItem {
    /// Where it stands in the topic.
    pub position: Position,
    /// The publisher's `token_id` (empty when its token has none).
    pub publisher_id: String,
    /// The payload.
    pub value: ItemValue,
}

/// A topic item's payload, as it was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemValue {
    /// Published as text.
    Text(String),
    /// Published as bytes.
    Binary(Vec<u8>),
}

/// What one subscription's stream brings, in the order the topic holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// An item published on the topic.
    Item(TopicItem),
    /// The service says the stream is alive; it carries nothing.
    Heartbeat,
    /// Items were skipped: the subscriber had `last` and the topic now stands at `new` on
    /// `new_page`, so the next item is `new + 1`. On the same page, the items in between
    /// are gone (often a subscriber that fell behind); on a new page, the topic's numbering
    /// started afresh.
    Discontinuity {
        /// The last sequence number the subscriber had.
        last: u64,
        /// Where the topic stands now.
        new: u64,
        /// The page it stands on.
        new_page: u64,
    },
    /// The stream broke; it ends after this.
    Broken(super::BackendError),
}

/// One subscription's stream. It ends only when the backend gives up on it, after a
/// [`StreamEvent::Broken`] when it knows why; the caller subscribes again.
pub type ItemStream = BoxStream<'static, StreamEvent>;

/// When a conditional write stores its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetCondition {
    /// Only if the key holds nothing.
    Absent,
    /// Only if the key holds exactly these bytes.
    Equal(Vec<u8>),
    /// If the key holds nothing or exactly these bytes: a retry-safe way to take a key.
    AbsentOrEqual(Vec<u8>),
}

impl SetCondition {
    /// Whether a key holding `current` meets the condition.
    pub fn holds_for(&self, current: Option<&[u8]>) -> bool {
        match self {
            SetCondition::Absent => current.is_none(),
            SetCondition::Equal(expected) => current == Some(expected.as_slice()),
            SetCondition::AbsentOrEqual(expected) => current.is_none_or(|value| value == expected),
        }
    }
}
