//! Counts kept apart for each thread and added up when read.
//!
//! Every webhook request adds to a dozen counts (its outcome, its route, the durations of its
//! steps and backend calls). Kept in one place, each add by one HTTP thread takes the count's
//! cache line away from the others, and on a busy relay that traffic cost more than the
//! counting itself. Here each thread adds to a set of its own, so an add stays in its core's
//! cache, and a scrape sums the sets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// How many sets of cells each metric keeps. Threads past this many share sets, which is
/// still exact (every add is atomic), only slower.
const SETS: usize = 16;

/// Unused cells after each set: a cache line of them, so that no two sets share a line
/// wherever the allocation starts.
const GAP: usize = 8;

/// `width` counting cells for each of `SETS` sets of threads.
#[derive(Debug)]
pub struct PerThread {
    cells: Box<[AtomicU64]>,
    width: usize,
}

impl PerThread {
    /// `width` cells, all zero.
    pub fn new(width: usize) -> Self {
        PerThread { cells: (0..SETS * (width + GAP)).map(|_| AtomicU64::new(0)).collect(), width }
    }

    /// The calling thread's cells.
    pub fn mine(&self) -> &[AtomicU64] {
        let start = this_threads_set() * (self.width + GAP);
        &self.cells[start..start + self.width]
    }

    /// The value of cell `cell` in every set.
    pub fn each(&self, cell: usize) -> impl Iterator<Item = u64> + '_ {
        self.cells.iter().skip(cell).step_by(self.width + GAP).map(|value| value.load(Ordering::Relaxed))
    }

    /// The sum of cell `cell` over every set.
    pub fn total(&self, cell: usize) -> u64 {
        self.each(cell).fold(0, u64::wrapping_add)
    }
}

/// The set of cells this thread adds to, handed out in turn as threads first count.
fn this_threads_set() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SET: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SETS;
    }
    SET.with(|set| *set)
}

/// A Prometheus counter kept per thread: adding is an uncontended atomic add. Clones share
/// the same counts.
#[derive(Debug, Clone)]
pub struct Tally(Arc<PerThread>);

impl Default for Tally {
    fn default() -> Self {
        Tally(Arc::new(PerThread::new(1)))
    }
}

impl Tally {
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `count`.
    pub fn inc_by(&self, count: u64) {
        self.0.mine()[0].fetch_add(count, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.total(0)
    }
}

impl TypedMetric for Tally {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Tally {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_from_more_threads_than_sets_are_all_counted() {
        let tally = Arc::new(Tally::default());
        let threads: Vec<_> = (0..SETS + 5)
            .map(|_| {
                let tally = tally.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| tally.inc()))
            })
            .collect();
        threads.into_iter().for_each(|thread| thread.join().unwrap());
        assert_eq!(tally.get(), (SETS as u64 + 5) * 1000);
    }

    #[test]
    fn each_thread_adds_to_its_own_set() {
        let cells = Arc::new(PerThread::new(3));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let cells = cells.clone();
                std::thread::spawn(move || {
                    cells.mine()[1].fetch_add(1, Ordering::Relaxed);
                    this_threads_set()
                })
            })
            .collect();
        let sets: Vec<usize> = threads.into_iter().map(|thread| thread.join().unwrap()).collect();
        let counts: Vec<u64> = cells.each(1).collect();
        for set in &sets {
            assert!(counts[*set] >= 1, "{counts:?} {sets:?}");
        }
        assert_eq!(cells.total(1), 2);
        assert_eq!(cells.total(0) + cells.total(2), 0);
    }
}
