//! What runs a topic's items once they are taken: the worker that takes them from the
//! stream's queue, and the count of what became of each.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::StreamMetrics;
use super::progress::{Progress, lock};
use crate::backend::Position;
use crate::event::{Message, Source};
use crate::relay::{LiveRelay, Outcome, Refusal};

/// An item waiting in a topic's queue: where it is on the topic, the message it became, and
/// when it arrived.
pub type Queued = (Position, Message, Instant);

/// Runs queued items: one after another, in order, or up to `concurrency` at once. Once the
/// relay stops, what is still queued goes to the spool without running, so that shutdown
/// does not wait on the backend for each. Items finishing out of order are fine for the
/// checkpoint, which is the oldest item not yet done. Each item runs under the relay in
/// force when it is taken, so that an item already taken finishes under that configuration.
pub async fn work(
    queued: mpsc::Receiver<Queued>,
    relay: LiveRelay,
    source: Source,
    progress: Arc<Mutex<Progress>>,
    metrics: StreamMetrics,
    stop: CancellationToken,
    concurrency: usize,
) {
    let (relay, source, progress, metrics, stop) = (&relay, &source, &progress, &metrics, &stop);
    tokio_stream::wrappers::ReceiverStream::new(queued)
        .for_each_concurrent(concurrency.max(1), |(position, message, received_at)| async move {
            let relay = relay.load_full();
            let outcome = if stop.is_cancelled() && relay.can_hold() {
                relay.hold(source, message).await
            } else {
                relay.dispatch(source, message, Instant::now()).await
            };
            settle(outcome, received_at, source, metrics);
            lock(progress).done(position);
        })
        .await;
}

/// Counts and logs what became of an item; it is done either way. As for webhooks, a
/// refusal is counted and logged at debug: a route refusing on purpose is not a fault, and a
/// failed step or a panic was logged where it happened. Only a lost item is an error.
pub fn settle(
    settled: Result<Outcome<'_>, Refusal>,
    received_at: Instant,
    source: &Source,
    metrics: &StreamMetrics,
) {
    metrics.item_duration.observe_duration(received_at.elapsed());
    metrics.count(&settled);
    match settled {
        Ok(outcome) => tracing::debug!(%source, outcome = outcome.code(), "item handled"),
        Err(refusal @ (Refusal::SpoolFull | Refusal::SpoolUnavailable)) => {
            metrics.lost.inc();
            tracing::error!(%source, %refusal, "an item is lost: the spool cannot take it");
        }
        Err(refusal) => tracing::debug!(%source, error = refusal.code(), %refusal, "an item was refused"),
    }
}
