//! Waits between background attempts: exponential, capped, with jitter so that events
//! spooled together during an outage do not all retry in the same instant.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff from `initial` up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// Backoff starting at `initial`, never longer than `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max }
    }

    /// The wait, in ms, after attempt number `attempt` (1 for the first): between half and
    /// all of `initial * 2^(attempt - 1)`, capped at `max`.
    pub fn delay_ms(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(1).min(30);
        let ceiling = self.initial.saturating_mul(1 << doublings).min(self.max);
        ceiling.mul_f64(rand::rng().random_range(0.5..=1.0)).as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_and_stop_at_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for (attempt, ceiling) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (40, 1000)] {
            let delay = backoff.delay_ms(attempt);
            assert!((ceiling / 2..=ceiling).contains(&delay), "attempt {attempt}: {delay} ms");
        }
    }
}
