//! Lines that can come once per event (a warning for a forged request, a service down, a
//! Momento outage; a note for each spooled event delivered after one) are written at most
//! once per interval from each place in the code, with the number held back since, so that a
//! flood of bad input, a failing dependency or the recovery from it cannot flood the log or
//! slow the relay with it. Metrics count every one.

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
    interval_ms: u64,
    /// When the last line was let through, in milliseconds since the epoch; 0 before the first.
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    /// One line a second.
    pub const fn per_second() -> Self {
        Throttle::every(1)
    }

    /// One line every `seconds`.
    pub const fn every(seconds: u64) -> Self {
        Throttle { interval_ms: seconds * 1000, last_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(lines held back since the last one let through)` when a line may be written
    /// now; otherwise `None`, and this one is counted as held back.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(crate::common::now_ms())
    }

    fn admit_at(&self, now_ms: u64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms >= last.saturating_add(self.interval_ms);
        if due && self.last_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// `tracing::event!` at `$level` at most once a second from this place in the code, with a
/// `suppressed` field counting the lines held back since the last one written.
#[macro_export]
macro_rules! log_throttled {
    ($level:expr, $($line:tt)+) => {{
        static THROTTLE: $crate::telemetry::Throttle = $crate::telemetry::Throttle::per_second();
        if let Some(suppressed) = THROTTLE.admit() {
            ::tracing::event!($level, suppressed, $($line)+);
        }
    }};
}

/// `tracing::warn!` at most once a second from this place in the code (see [`log_throttled!`]).
#[macro_export]
macro_rules! warn_throttled {
    ($($line:tt)+) => {
        $crate::log_throttled!(::tracing::Level::WARN, $($line)+)
    };
}

/// `tracing::info!` at most once a second from this place in the code (see [`log_throttled!`]).
#[macro_export]
macro_rules! info_throttled {
    ($($line:tt)+) => {
        $crate::log_throttled!(::tracing::Level::INFO, $($line)+)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_the_first_line_through_then_one_per_interval_with_the_count_held_back() {
        let throttle = Throttle::every(10);
        assert_eq!(throttle.admit_at(1_000_500), Some(0));
        assert_eq!(throttle.admit_at(1_000_500), None);
        // A whole interval from the last line, not the next tick of a clock's seconds.
        assert_eq!(throttle.admit_at(1_010_000), None);
        assert_eq!(throttle.admit_at(1_010_499), None);
        assert_eq!(throttle.admit_at(1_010_500), Some(3));
        assert_eq!(throttle.admit_at(1_010_500), None);
        assert_eq!(throttle.admit_at(2_000_000), Some(1));
        assert_eq!(throttle.admit_at(2_000_000), None);
    }

    #[test]
    fn lets_exactly_one_of_many_concurrent_callers_through() {
        let throttle = Throttle::per_second();
        let admitted: usize = std::thread::scope(|scope| {
            let callers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| (0..1000).filter(|_| throttle.admit_at(5_000).is_some()).count()))
                .collect();
            callers.into_iter().map(|caller| caller.join().unwrap()).sum()
        });
        assert_eq!(admitted, 1);
        assert_eq!(throttle.admit_at(6_000), Some(7_999));
    }
}
