//! What runs a topic's items once they are taken: the worker that takes them from the
//! stream's queue, the spiller that puts in the spool what finds the queue full, and the
//! count of what became of each.

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

/// What the worker and the spiller share: the relay items run under, where they came from,
/// the topic's progress and its counters.
#[derive(Clone)]
pub struct Carrier {
    /// The relay in force; each item runs under the one in force when it is taken.
    pub relay: LiveRelay,
    /// The subscription and topic the items came from.
    pub source: Source,
    /// Which items are done, for the checkpoint.
    pub progress: Arc<Mutex<Progress>>,
    /// The topic's counters.
    pub metrics: StreamMetrics,
}

impl Carrier {
    /// Counts what became of the item at `position`, and marks it done.
    fn finish(&self, position: Position, settled: Result<Outcome<'_>, Refusal>, received_at: Instant) {
        settle(settled, received_at, &self.source, &self.metrics);
        lock(&self.progress).done(position);
    }
}

/// Runs queued items: one after another, in order, or up to `concurrency` at once. Once the
/// relay stops, what is still queued goes to the spool without running, so that shutdown
/// does not wait on the backend for each. Items finishing out of order are fine for the
/// checkpoint, which is the oldest item not yet done. Each item runs under the relay in
/// force when it is taken, so that an item already taken finishes under that configuration.
pub async fn work(
    queued: mpsc::Receiver<Queued>,
    carrier: Carrier,
    stop: CancellationToken,
    concurrency: usize,
) {
    let (carrier, stop) = (&carrier, &stop);
    tokio_stream::wrappers::ReceiverStream::new(queued)
        .for_each_concurrent(concurrency.max(1), |(position, message, received_at)| async move {
            let relay = carrier.relay.load_full();
            let outcome = if stop.is_cancelled() && relay.can_hold() {
                relay.hold(&carrier.source, message).await
            } else {
                relay.dispatch(&carrier.source, message, Instant::now()).await
            };
            carrier.finish(position, outcome, received_at);
        })
        .await;
}

/// Where the reader puts each item it takes: the queue the worker runs, or, when that is
/// full, the spiller.
pub struct Outlets {
    /// The worker's queue.
    pub queue: mpsc::Sender<Queued>,
    /// The spiller's.
    pub spill: mpsc::Sender<Queued>,
}

/// The worker and the spiller have stopped.
pub struct Closed;

impl Outlets {
    /// Queues `item` for the worker; when the queue is full, hands it to the spiller if the
    /// relay has a spool, or waits for room if it has none. A full spiller makes the stream
    /// wait, at the spool's pace.
    pub async fn put(&self, item: Queued, can_hold: bool, metrics: &StreamMetrics) -> Result<(), Closed> {
        match self.queue.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(item)) if can_hold => {
                metrics.spilled.inc();
                self.spill.send(item).await.map_err(|_| Closed)
            }
            Err(mpsc::error::TrySendError::Full(item)) => self.queue.send(item).await.map_err(|_| Closed),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Closed),
        }
    }
}

/// Spool writes the spiller waits on at once. The spool commits every write waiting
/// together, with one fsync, so a burst is spooled at the pace of its commits, not one fsync
/// an item.
const SPILLING_AT_ONCE: usize = 256;

/// Puts in the spool each item that found the queue full, many at once, so that a burst
/// over what the worker keeps up with is held at the spool's pace; redelivery runs them
/// later. An item is done for the checkpoint once it is safe in the spool.
pub async fn spill(spilled: mpsc::Receiver<Queued>, carrier: Carrier) {
    let carrier = &carrier;
    tokio_stream::wrappers::ReceiverStream::new(spilled)
        .for_each_concurrent(SPILLING_AT_ONCE, |(position, message, received_at)| async move {
            let relay = carrier.relay.load_full();
            let held = relay.hold(&carrier.source, message).await;
            carrier.finish(position, held, received_at);
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
