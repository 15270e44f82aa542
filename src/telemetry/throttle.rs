//! Warnings that a fault can raise once per event (a forged request, a service down, a
//! Momento outage) are written at most once per interval from each place in the code, with
//! the number held back since, so that a flood of bad input or a failing dependency cannot
//! flood the log or slow the relay with it. Metrics count every one.

use std::sync::atomic::{AtomicU64, Ordering};

/// Lets one log line through per interval; counts the rest.
///
/// ```
/// use topic_relay::telemetry::Throttle;
///
/// static FAILED: Throttle = Throttle::per_second();
/// for attempt in 0..1000 {
///     if let Some(suppressed) = FAILED.admit() {
///         // The first of the thousand, and then one a second, each with how many were
///         // held back since the one before.
///         tracing::warn!(attempt, suppressed, "the call failed");
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Throttle {
    interval_s: u64,
    /// The second (since the epoch) the last line was let through.
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    /// One line a second.
    pub const fn per_second() -> Self {
        Throttle::every(1)
    }

    /// One line every `seconds`.
    pub const fn every(seconds: u64) -> Self {
        Throttle { interval_s: seconds, last: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(lines held back since the last one let through)` when a line may be written
    /// now; otherwise `None`, and this one is counted as held back.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(crate::accept::now_ms() / 1000)
    }

    fn admit_at(&self, now_s: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now_s >= last.saturating_add(self.interval_s);
        if due && self.last.compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// `tracing::warn!` at most once a second from this place in the code, with a `suppressed`
/// field counting the lines held back since the last one written.
#[macro_export]
macro_rules! warn_throttled {
    ($($line:tt)+) => {{
        static THROTTLE: $crate::telemetry::Throttle = $crate::telemetry::Throttle::per_second();
        if let Some(suppressed) = THROTTLE.admit() {
            ::tracing::warn!(suppressed, $($line)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_the_first_line_through_then_one_per_interval_with_the_count_held_back() {
        let throttle = Throttle::every(10);
        assert_eq!(throttle.admit_at(1_000), Some(0));
        assert_eq!(throttle.admit_at(1_000), None);
        assert_eq!(throttle.admit_at(1_009), None);
        assert_eq!(throttle.admit_at(1_010), Some(2));
        assert_eq!(throttle.admit_at(1_010), None);
        assert_eq!(throttle.admit_at(2_000), Some(1));
        assert_eq!(throttle.admit_at(2_000), None);
    }

    #[test]
    fn lets_exactly_one_of_many_concurrent_callers_through() {
        let throttle = Throttle::per_second();
        let admitted: usize = std::thread::scope(|scope| {
            let callers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| (0..1000).filter(|_| throttle.admit_at(5).is_some()).count()))
                .collect();
            callers.into_iter().map(|caller| caller.join().unwrap()).sum()
        });
        assert_eq!(admitted, 1);
        assert_eq!(throttle.admit_at(6), Some(7_999));
    }
}
