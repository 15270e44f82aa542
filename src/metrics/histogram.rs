//! A histogram whose observations are a few relaxed atomic adds to the observing thread's
//! own cells: no lock, and no cache line taken from another thread, so it can sit on the hot
//! path. `prometheus_client`'s own histogram takes a mutex on every observation.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::per_thread::PerThread;

/// Upper bounds, in seconds, for durations on a webhook's path: fine below a millisecond,
/// and with Momento's 5 s deadline (and the relay's 4 s request timeout) as bounds of their own.
pub const DURATION_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.0, 5.0];

/// Upper bounds for how many changes one spool commit carries.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// A Prometheus histogram with fixed buckets; clones share the same counts.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<Buckets>);

#[derive(Debug)]
struct Buckets {
    bounds: Box<[f64]>,
    /// Per thread: one count per bound, plus the `+Inf` bucket (not cumulative), then the sum
    /// of observations as `f64` bits.
    cells: PerThread,
}

impl Histogram {
    /// A histogram with these upper bounds, in increasing order.
    pub fn new(bounds: &[f64]) -> Self {
        let cells = PerThread::new(bounds.len() + 2);
        Histogram(Arc::new(Buckets { bounds: bounds.into(), cells }))
    }

    /// Records one value.
    pub fn observe(&self, value: f64) {
        let bucket = self.0.bounds.partition_point(|bound| *bound < value);
        let mine = self.0.cells.mine();
        mine[bucket].fetch_add(1, Ordering::Relaxed);
        let _ = mine[self.sum_cell()].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }

    fn sum_cell(&self) -> usize {
        self.0.bounds.len() + 1
    }

    /// The count of each bucket, `+Inf` last; not cumulative.
    fn bucket_counts(&self) -> impl Iterator<Item = u64> + '_ {
        (0..=self.0.bounds.len()).map(|bucket| self.0.cells.total(bucket))
    }

    /// Records a duration, in seconds.
    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.bucket_counts().sum()
    }

    /// The sum of the observations so far.
    pub fn sum(&self) -> f64 {
        self.0.cells.each(self.sum_cell()).map(f64::from_bits).sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let bounds = self.0.bounds.iter().copied().chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> = bounds.zip(self.bucket_counts()).collect();
        // The count is the buckets' total, so that `_count` always equals the `+Inf` bucket.
        let count = buckets.iter().map(|(_, count)| count).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_is_not_below_them() {
        let histogram = Histogram::new(&[1.0, 2.0]);
        for value in [0.5, 1.0, 1.5, 2.0, 7.0] {
            histogram.observe(value);
        }
        let counts: Vec<u64> = histogram.bucket_counts().collect();
        assert_eq!(counts, vec![2, 2, 1]);
        assert_eq!(histogram.count(), 5);
        assert_eq!(histogram.sum(), 12.0);
    }

    #[test]
    fn clones_share_their_counts_across_threads() {
        let histogram = Histogram::new(DURATION_BUCKETS);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let histogram = histogram.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| histogram.observe(0.001)))
            })
            .collect();
        threads.into_iter().for_each(|thread| thread.join().unwrap());
        assert_eq!(histogram.count(), 4000);
        assert!((histogram.sum() - 4.0).abs() < 1e-9);
    }
}
