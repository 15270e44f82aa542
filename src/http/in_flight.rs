//! `server.max_in_flight`: how many webhook requests may be handled at once.
//!
//! One atomic count, entered with a compare-and-swap and left with a subtraction. A
//! semaphore would do the same job but takes its waiters' lock on every release, and every
//! webhook request releases one.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The count of webhook requests in flight, and its limit.
#[derive(Debug)]
pub struct InFlight {
    count: AtomicUsize,
    max: usize,
}

impl InFlight {
    /// Allows at most `max` requests at once.
    pub fn new(max: usize) -> Self {
        InFlight { count: AtomicUsize::new(0), max }
    }

    /// Counts one more request in flight, unless `max` already are; the request stays counted
    /// until the returned value is dropped.
    pub fn try_enter(&self) -> Option<Entered<'_>> {
        self.count
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |count| {
                (count < self.max).then_some(count + 1)
            })
            .ok()
            .map(|_| Entered(self))
    }

    /// How many requests are in flight now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

/// One request counted in flight, until dropped.
#[derive(Debug)]
pub struct Entered<'a>(&'a InFlight);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_again_once_one_leaves() {
        let in_flight = InFlight::new(2);
        let first = in_flight.try_enter().expect("first");
        let _second = in_flight.try_enter().expect("second");
        assert!(in_flight.try_enter().is_none());
        assert_eq!(in_flight.count(), 2);
        drop(first);
        assert_eq!(in_flight.count(), 1);
        assert!(in_flight.try_enter().is_some());
        assert_eq!(in_flight.count(), 1, "the third left when it was dropped");
    }

    #[test]
    fn a_refused_request_is_not_counted() {
        let in_flight = InFlight::new(1);
        let _only = in_flight.try_enter().expect("the only one");
        for _ in 0..10 {
            assert!(in_flight.try_enter().is_none());
        }
        assert_eq!(in_flight.count(), 1);
    }

    #[test]
    fn concurrent_requests_never_exceed_the_limit() {
        const MAX: usize = 3;
        let in_flight = Arc::new(InFlight::new(MAX));
        let most_seen = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (in_flight, most_seen) = (in_flight.clone(), most_seen.clone());
                std::thread::spawn(move || {
                    let mut admitted = 0;
                    for _ in 0..20_000 {
                        if let Some(_entered) = in_flight.try_enter() {
                            admitted += 1;
                            most_seen.fetch_max(in_flight.count(), Ordering::Relaxed);
                        }
                    }
                    admitted
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|thread| thread.join().unwrap()).sum();
        assert!(admitted > 0);
        assert!(
            most_seen.load(Ordering::Relaxed) <= MAX,
            "saw {} in flight",
            most_seen.load(Ordering::Relaxed)
        );
        assert_eq!(in_flight.count(), 0, "every admitted request left");
    }
}
