//! Which items of one topic are done, and so where a subscription would resume.
//!
//! An item is done when its pipeline finished or it is in the spool. Items finish out of
//! order (one that overflows the queue is spooled before those queued ahead of it), so the
//! resume point is the oldest item not yet done, or the one after the newest received.

use std::collections::BTreeSet;

use crate::backend::Position;

/// The items received and not yet done, and the newest received.
#[derive(Debug, Default)]
pub struct Progress {
    newest: Option<Position>,
    open: BTreeSet<Position>,
}

/// What a received item is, next to the newest one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next item, or the first one seen.
    Next,
    /// At or before the newest item received: a repeat, to skip.
    Repeat,
    /// Items between the newest and this one never came.
    Gap {
        /// The first missed sequence number.
        from: u64,
        /// The last missed sequence number.
        to: u64,
    },
    /// The first item of a new sequence page: Momento numbered the topic afresh.
    NewPage,
}

impl Progress {
    /// Progress that resumes at `resume_at`, the first item wanted, when given.
    pub fn starting_at(resume_at: Option<Position>) -> Self {
        let newest = resume_at.map(|at| Position { page: at.page, sequence: at.sequence.saturating_sub(1) });
        Progress { newest, open: BTreeSet::new() }
    }

    /// Classifies an item at `position`, and records it as received and open unless it is a
    /// repeat.
    pub fn receive(&mut self, position: Position) -> Arrival {
        let arrival = match self.newest {
            None => Arrival::Next,
            Some(newest) if position.page > newest.page => Arrival::NewPage,
            Some(newest) if position <= newest => Arrival::Repeat,
            Some(newest) if position.sequence > newest.sequence + 1 => {
                Arrival::Gap { from: newest.sequence + 1, to: position.sequence - 1 }
            }
            Some(_) => Arrival::Next,
        };
        if arrival != Arrival::Repeat {
            self.newest = Some(position);
            self.open.insert(position);
        }
        arrival
    }

    /// Takes the service's word that the topic stands at `position` now, so that the item
    /// after it is the next one rather than a gap: after a discontinuity, whose items are
    /// already counted. Never moves back.
    pub fn skip_to(&mut self, position: Position) {
        if self.newest.is_none_or(|newest| position > newest) {
            self.newest = Some(position);
        }
    }

    /// The page of the newest item received, or of the resume point.
    pub fn page(&self) -> Option<u64> {
        self.newest.map(|newest| newest.page)
    }

    /// Marks the item at `position` done.
    pub fn done(&mut self, position: Position) {
        self.open.remove(&position);
    }

    /// The first item a subscription should ask for to miss nothing that is not done.
    pub fn resume_at(&self) -> Option<Position> {
        match self.open.first() {
            Some(oldest_open) => Some(*oldest_open),
            None => self.newest.map(|newest| Position { page: newest.page, sequence: newest.sequence + 1 }),
        }
    }
}

/// The progress, even when a thread panicked while holding it: it is counts and positions,
/// never left half-changed.
pub fn lock(progress: &std::sync::Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(page: u64, sequence: u64) -> Position {
        Position { page, sequence }
    }

    #[test]
    fn the_resume_point_is_the_oldest_item_not_done() {
        let mut progress = Progress::default();
        assert_eq!(progress.resume_at(), None);
        for sequence in 1..=3 {
            assert_eq!(progress.receive(at(1, sequence)), Arrival::Next);
        }
        progress.done(at(1, 3));
        assert_eq!(progress.resume_at(), Some(at(1, 1)), "1 and 2 are still open");
        progress.done(at(1, 1));
        assert_eq!(progress.resume_at(), Some(at(1, 2)));
        progress.done(at(1, 2));
        assert_eq!(progress.resume_at(), Some(at(1, 4)), "all done: the next one");
    }

    #[test]
    fn after_a_skip_the_next_item_is_no_gap_and_the_resume_point_moves_on() {
        let mut progress = Progress::starting_at(Some(at(1, 5)));
        progress.skip_to(at(1, 20));
        assert_eq!(progress.resume_at(), Some(at(1, 21)));
        assert_eq!(progress.receive(at(1, 21)), Arrival::Next);
        progress.skip_to(at(1, 3));
        assert_eq!(progress.receive(at(1, 22)), Arrival::Next, "a skip never moves back");
        progress.skip_to(at(2, 0));
        assert_eq!(progress.receive(at(2, 1)), Arrival::Next, "a new page's first item");
    }

    #[test]
    fn repeats_gaps_and_new_pages_are_told_apart() {
        let mut progress = Progress::starting_at(Some(at(1, 5)));
        assert_eq!(progress.receive(at(1, 4)), Arrival::Repeat, "before the resume point");
        assert_eq!(progress.receive(at(1, 5)), Arrival::Next);
        assert_eq!(progress.receive(at(1, 5)), Arrival::Repeat, "the SDK's resubscribe repeats one");
        assert_eq!(progress.receive(at(1, 9)), Arrival::Gap { from: 6, to: 8 });
        assert_eq!(progress.receive(at(2, 1)), Arrival::NewPage);
        assert_eq!(progress.receive(at(2, 2)), Arrival::Next);
        assert_eq!(progress.resume_at(), Some(at(1, 5)), "5 is still open; a repeat closed nothing");
    }
}
