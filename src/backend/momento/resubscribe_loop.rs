//! Ends an SDK subscription that is resubscribing in a loop.
//!
//! After a broken stream the SDK subscribes again at once, and again at once when that fails,
//! for as long as it is polled: it reports no error, and waits for nothing. Against a Momento
//! that is down, or a network path that refuses connections, that is hundreds of calls a
//! second per topic, while the subscription looks open. Each failed attempt wakes the reader
//! without an item, so a burst of such wake-ups is how the loop shows from outside. The
//! stream then ends, and the relay subscribes again itself: with its own backoff, and with
//! the failure in its status, readiness and metrics.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use futures::stream::StreamExt;
use tokio::time::Instant;

/// Wake-ups without an item that end the stream when they all fall within [`LOOP_WINDOW`].
pub const LOOP_WAKES: u32 = 50;

/// See [`LOOP_WAKES`]: ten wake-ups a second without an item, sustained for five seconds.
/// Momento's heartbeats (the only items the SDK wakes for and skips) come seconds apart,
/// and each item read resets the count.
pub const LOOP_WINDOW: Duration = Duration::from_secs(5);

/// A stream that ends when its inner stream wakes the reader [`LOOP_WAKES`] times within
/// [`LOOP_WINDOW`] without yielding an item.
pub struct LoopBreaker<S> {
    inner: S,
    /// When the current run of item-less polls began, and how long it is.
    empty_run: Option<(Instant, u32)>,
    ended: bool,
}

impl<S> LoopBreaker<S> {
    /// Watches `inner`.
    pub fn new(inner: S) -> Self {
        LoopBreaker { inner, empty_run: None, ended: false }
    }
}

impl<S: Stream + Unpin> Stream for LoopBreaker<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(context) {
            Poll::Ready(item) => {
                this.empty_run = None;
                this.ended = item.is_none();
                Poll::Ready(item)
            }
            Poll::Pending => {
                let now = Instant::now();
                let (began, wakes) = this.empty_run.get_or_insert((now, 0));
                *wakes += 1;
                if *wakes < LOOP_WAKES {
                    return Poll::Pending;
                }
                if now.duration_since(*began) < LOOP_WINDOW {
                    this.ended = true;
                    tracing::debug!(wakes = LOOP_WAKES, "the subscription keeps resubscribing; ending it");
                    return Poll::Ready(None);
                }
                // Slower than a loop: a new run starts here.
                this.empty_run = Some((now, 1));
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that wakes its reader again after every poll, and yields an item on every
    /// `every`th poll (never when 0).
    struct Restless {
        polls: u32,
        every: u32,
    }

    impl Stream for Restless {
        type Item = u32;

        fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<u32>> {
            self.polls += 1;
            if self.every > 0 && self.polls.is_multiple_of(self.every) {
                return Poll::Ready(Some(self.polls));
            }
            context.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_stream_that_keeps_waking_without_an_item_ends() {
        let mut stream = LoopBreaker::new(Restless { polls: 0, every: 0 });
        assert_eq!(stream.next().await, None);
        assert_eq!(stream.inner.polls, LOOP_WAKES, "ended at the first run long enough");
        assert_eq!(stream.next().await, None, "and stays ended");
        assert_eq!(stream.inner.polls, LOOP_WAKES, "without polling the inner stream again");
    }

    #[tokio::test]
    async fn items_in_between_keep_a_busy_stream_open() {
        let mut stream = LoopBreaker::new(Restless { polls: 0, every: LOOP_WAKES });
        for _ in 0..20 {
            assert!(stream.next().await.is_some());
        }
    }

    #[tokio::test]
    async fn a_run_that_took_longer_than_the_window_starts_over_instead_of_ending() {
        let mut stream = LoopBreaker::new(Restless { polls: 0, every: 0 });
        let waker = futures::task::noop_waker();
        let mut context = Context::from_waker(&waker);
        let long_ago = Instant::now() - LOOP_WINDOW;
        stream.empty_run = Some((long_ago, LOOP_WAKES - 1));
        assert!(Pin::new(&mut stream).poll_next(&mut context).is_pending());
        assert!(matches!(stream.empty_run, Some((began, 1)) if began > long_ago), "a new run");
        stream.empty_run = Some((Instant::now(), LOOP_WAKES - 1));
        assert!(Pin::new(&mut stream).poll_next(&mut context).is_ready(), "the same within the window ends");
    }
}
