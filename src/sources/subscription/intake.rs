//! What a stream makes of each event it reads, before the item is queued: repeats skipped,
//! gaps, discontinuities and new pages counted, and items too large to take refused.

use std::sync::Mutex;

use super::progress::{Arrival, Progress, lock};
use super::stream::TopicStream;
use crate::backend::{ItemValue, Position, TopicItem};
use crate::relay::Refusal;

impl TopicStream {
    /// Counts what the service says it skipped: items lost on the same page, or a topic
    /// whose numbering started afresh on a new one. The next item is then no gap.
    pub(super) fn discontinuity(&self, last: u64, new: u64, new_page: u64, progress: &Mutex<Progress>) {
        let (source, topic) = (&self.source, &self.key.topic);
        let page = lock(progress).page();
        if page == Some(new_page) {
            let skipped = new.saturating_sub(last);
            self.metrics.discontinuities.inc();
            self.metrics.skipped.inc_by(skipped);
            self.update(|report| {
                report.discontinuities += 1;
                report.items_skipped += skipped;
            });
            crate::warn_throttled!(%source, topic, last, new, skipped,
                "the service skipped items on the topic; the relay may have fallen behind");
        } else if page.is_some() {
            self.metrics.new_pages.inc();
            self.update(|report| report.page_changes += 1);
            crate::warn_throttled!(%source, topic, page = new_page,
                "the topic was reset: its numbering started afresh on a new page");
        }
        lock(progress).skip_to(Position { page: new_page, sequence: new });
    }

    /// The refusal of an item over `max_item_bytes`, which is skipped rather than taken: a
    /// webhook would answer it 413, and a stream cannot refuse it.
    pub(super) fn too_large(&self, item: &TopicItem) -> Option<Refusal> {
        let bytes = match &item.value {
            ItemValue::Text(text) => text.len(),
            ItemValue::Binary(bytes) => bytes.len(),
        };
        if bytes <= self.max_item_bytes {
            return None;
        }
        let (source, topic, sequence) = (&self.source, &self.key.topic, item.position.sequence);
        crate::warn_throttled!(%source, topic, sequence, bytes, limit = self.max_item_bytes,
            "an item over server.max_body_bytes was skipped");
        Some(Refusal::MessageTooLarge { bytes, limit: self.max_item_bytes })
    }

    /// Whether to take `item`: not a repeat. Counts gaps and new pages.
    pub(super) fn take(&self, item: &TopicItem, progress: &Mutex<Progress>) -> bool {
        let arrival = lock(progress).receive(item.position);
        let (source, topic) = (&self.source, &self.key.topic);
        match arrival {
            Arrival::Repeat => {
                self.metrics.repeats.inc();
                tracing::debug!(topic, sequence = item.position.sequence, "a repeated item is skipped");
                return false;
            }
            Arrival::Gap { from, to } => {
                self.metrics.missed.inc_by(to - from + 1);
                tracing::warn!(%source, topic, from, to, page = item.position.page, "items were missed on the topic");
            }
            Arrival::NewPage => {
                self.metrics.new_pages.inc();
                self.update(|report| report.page_changes += 1);
                tracing::info!(%source, topic, page = item.position.page, "the topic's numbering started afresh on a new page");
            }
            Arrival::Next => {}
        }
        self.metrics.received.inc();
        true
    }
}
