//! One topic of one subscription: own it (lease), resume at its checkpoint, read its items
//! into a bounded queue, run them one after another, and keep the checkpoint.
//!
//! - The reader skips repeats and counts gaps and new pages by sequence number, and the
//!   discontinuities and heartbeats the service reports.
//! - A stream that brings neither item nor heartbeat for `stall_after` is counted as
//!   stalled, and opened again like one that failed.
//! - A full queue does not stop the reader: the item goes to the spool, through the
//!   spiller, which writes many at once.
//! - The checkpoint is the first item not yet done (run, or in the spool), written on a timer
//!   and when the stream stops.
//! - Subscribing again after a failure waits a jittered, doubling delay. A stream that the
//!   backend ends soon after it opened, having brought nothing new, counts as a failure.
//!
//! It is one state machine (own, resume, read, hand over or stop) over one set of fields, and
//! a little over 400 lines; its helpers already live apart (`lease`, `checkpoint`, `intake`,
//! `worker`, `progress`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::checkpoint::{CheckpointKey, Checkpoints, write_checkpoints};
use super::lease::{Handover, Lease, keep};
use super::membership::{Membership, Preference};
use super::metrics::StreamMetrics;
use super::progress::{Progress, lock};
use super::report::{StreamReport, StreamState};
use super::worker::{Carrier, Outlets, settle, spill, work};
use super::{Ownership, SubscriptionSettings, item_message};
use crate::backend::{Backend, BackendError, ItemStream, StreamEvent};
use crate::delivery::backoff::Backoff;
use crate::event::Source;
use crate::relay::LiveRelay;

/// Everything one topic's stream needs.
pub struct TopicStream {
    /// Where its items come from, for routes.
    pub source: Source,
    /// The subscription's settings.
    pub settings: Arc<SubscriptionSettings>,
    /// Where its checkpoint lives.
    pub key: CheckpointKey,
    /// The backend it subscribes through, and keeps its lease and checkpoint in.
    pub backend: Arc<dyn Backend>,
    /// The core its items go to, as the last reload left it.
    pub relay: LiveRelay,
    /// Every stream's checkpoints.
    pub checkpoints: Checkpoints,
    /// Its series.
    pub metrics: StreamMetrics,
    /// What `/v1/status` shows of it.
    pub report: Arc<Mutex<StreamReport>>,
    /// This replica's id, held in the leases it owns.
    pub replica: String,
    /// The replicas sharing the subscription's topics, and which one each topic prefers.
    pub membership: Membership,
    /// The largest item taken (`server.max_body_bytes`); a larger one is refused and counted.
    pub max_item_bytes: usize,
}

/// How long a subscription that brings no item must last for its end not to count as a
/// failed attempt.
const SETTLED: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a stream stopped listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The relay is shutting down.
    Stopped,
    /// Another replica may own the topic now.
    LeaseLost,
}

/// How reading one stream ended.
enum ReadEnd {
    /// The relay stops, or another replica may own the topic now.
    Ended(Ended),
    /// The stream ended or broke; the error says why when the backend said.
    Closed(Option<BackendError>),
    /// It brought neither item nor heartbeat for `stall_after`.
    Stalled,
}

impl TopicStream {
    /// Runs until `stop`: waits for ownership, listens while it lasts, and on shutdown leaves
    /// every item received done, the checkpoint written and the lease released.
    pub async fn run(self, stop: CancellationToken) {
        let mut lease = (self.settings.owner == Ownership::Lease).then(|| {
            let SubscriptionSettings { cache, lease_ttl, .. } = self.settings.as_ref();
            Lease::new(
                self.backend.clone(),
                cache,
                &self.key.subscription,
                &self.key.topic,
                &self.replica,
                *lease_ttl,
            )
        });
        loop {
            if let Some(lease) = &mut lease
                && !self.wait_for(lease, &stop).await
            {
                break;
            }
            let lost = CancellationToken::new();
            let handing_over = Arc::new(AtomicBool::new(false));
            // The stream's helper tasks end with it, also when the shutdown grace aborts it.
            let keeper = lease.take().map(|lease| {
                let handover = Handover {
                    membership: self.membership.clone(),
                    topic: self.key.topic.clone(),
                    handing_over: handing_over.clone(),
                };
                AbortOnDropHandle::new(tokio::spawn(keep(lease, lost.clone(), stop.clone(), handover)))
            });
            self.set_owned(true);
            let ended = self.listen(&stop, &lost, &handing_over).await;
            self.set_owned(false);
            if let Some(keeper) = keeper {
                lease = keeper.await.ok();
            }
            if ended == Ended::Stopped {
                break;
            }
            if handing_over.load(Ordering::Acquire) {
                if let Some(lease) = &mut lease {
                    lease.release().await;
                }
                tracing::info!(source = %self.source, topic = self.key.topic,
                    "handed the topic over to the replica it prefers; standing by");
                continue;
            }
            tracing::warn!(source = %self.source, topic = self.key.topic, "lost the topic's lease; standing by");
        }
        if let Some(lease) = &mut lease {
            lease.release().await;
        }
        self.update(|report| report.state = StreamState::Stopped);
    }

    /// Tries to take the lease until it is taken (true) or the relay stops (false).
    async fn wait_for(&self, lease: &mut Lease, stop: &CancellationToken) -> bool {
        self.update(|report| report.state = StreamState::Standby);
        // Replicas standing by do not all try at once.
        let standby = Backoff::new(lease.standby_every(), lease.standby_every());
        let mut failures = 0u32;
        let standing_aside_since = Instant::now();
        loop {
            // Another live member is this topic's preferred owner: it takes the lease, and
            // this replica stays out of its way. Only for two lease TTLs, though: should the
            // replicas' views of the members disagree, the topic must not go unowned.
            let preference = self.membership.preference(&self.key.topic);
            let preferred_elsewhere = preference == Preference::Theirs
                && standing_aside_since.elapsed() < 2 * self.settings.lease_ttl;
            let taken = if preferred_elsewhere { Ok(false) } else { lease.take().await };
            match taken {
                Ok(true) => {
                    tracing::info!(source = %self.source, topic = self.key.topic, "this replica owns the topic");
                    return true;
                }
                Ok(false) => {
                    // The owner hands the topic over once it reads this claim.
                    if preference == Preference::Mine
                        && let Err(error) = lease.claim().await
                    {
                        tracing::debug!(topic = self.key.topic, %error, "cannot claim the topic");
                    }
                    failures = 0;
                    self.update(|report| (report.state, report.last_error) = (StreamState::Standby, None));
                }
                // A lease that cannot be taken (a missing cache, a key without write access)
                // is as visible as a topic that cannot be subscribed to.
                Err(error) => {
                    failures += 1;
                    self.update(|report| {
                        (report.state, report.last_error) = (StreamState::Failing, Some(error.to_string()))
                    });
                    if failures.is_power_of_two() {
                        tracing::error!(source = %self.source, topic = self.key.topic, %error, failures,
                            "cannot take the topic's lease; retrying");
                    }
                }
            }
            let pause = std::time::Duration::from_millis(standby.delay_ms(1));
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Listens while this replica owns the topic; then finishes or spools what it holds and
    /// writes the checkpoint, when stopping or handing the topic over (`handed_over` set).
    async fn listen(
        &self,
        stop: &CancellationToken,
        lost: &CancellationToken,
        handed_over: &AtomicBool,
    ) -> Ended {
        let resume = self.checkpoints.load(&self.key).await;
        let progress = Arc::new(Mutex::new(Progress::starting_at(resume)));
        let carrier = Carrier {
            relay: self.relay.clone(),
            source: self.source.clone(),
            progress: progress.clone(),
            metrics: self.metrics.clone(),
        };
        let (queue, queued) = mpsc::channel(self.settings.queue);
        let worker = AbortOnDropHandle::new(tokio::spawn(work(
            queued,
            carrier.clone(),
            stop.clone(),
            self.settings.concurrency,
        )));
        let (spill_to, spilled) = mpsc::channel(self.settings.queue);
        let spiller = AbortOnDropHandle::new(tokio::spawn(spill(spilled, carrier)));
        let outlets = Outlets { queue, spill: spill_to };
        let stop_writing = CancellationToken::new();
        let writer = AbortOnDropHandle::new(tokio::spawn(write_checkpoints(
            self.checkpoints.clone(),
            self.key.clone(),
            progress.clone(),
            self.settings.checkpoint_interval,
            self.report.clone(),
            stop_writing.clone(),
        )));
        let ended = self.subscribe_and_read(&progress, &outlets, stop, lost).await;
        drop(outlets);
        let _ = worker.await;
        let _ = spiller.await;
        stop_writing.cancel();
        let _ = writer.await;
        let resume_at = lock(&progress).resume_at();
        // After losing the lease, the new owner's checkpoint may be ahead: leave it alone.
        // Handing over, this replica still holds the lease, and the next owner resumes here.
        if (ended == Ended::Stopped || handed_over.load(Ordering::Acquire))
            && let Some(position) = resume_at
            && let Err(error) = self.checkpoints.store(&self.key, position).await
        {
            tracing::warn!(topic = self.key.topic, %error, "cannot write the shared checkpoint at shutdown");
        }
        ended
    }

    async fn subscribe_and_read(
        &self,
        progress: &Arc<Mutex<Progress>>,
        outlets: &Outlets,
        stop: &CancellationToken,
        lost: &CancellationToken,
    ) -> Ended {
        let backoff = Backoff::new(self.settings.reconnect_initial, self.settings.reconnect_max);
        let mut failures = 0u32;
        loop {
            let resume = lock(progress).resume_at();
            // A topic that keeps failing stays `failing` while it is tried again, so that
            // readiness does not flap with each attempt.
            self.update(|report| {
                report.resume_at = resume;
                if failures == 0 {
                    report.state = StreamState::Subscribing;
                }
            });
            let subscribed = tokio::select! {
                () = stop.cancelled() => return Ended::Stopped,
                () = lost.cancelled() => return Ended::LeaseLost,
                subscribed = self.backend.subscribe(&self.key.cache, &self.key.topic, resume) => subscribed,
            };
            let items = match subscribed {
                Ok(items) => items,
                Err(error) => {
                    failures += 1;
                    self.failed_to_subscribe(&error, failures);
                    match pause(backoff.delay_ms(failures), stop, lost).await {
                        Some(ended) => return ended,
                        None => continue,
                    }
                }
            };
            let from = match resume {
                Some(at) => format!("item {} of page {}", at.sequence, at.page),
                None => "the next item published".to_owned(),
            };
            tracing::info!(source = %self.source, topic = self.key.topic, from, "listening to the topic");
            // The last error stays shown until the stream brings an item: a stream that opens
            // only to stall or break is still failing.
            self.update(|report| report.state = StreamState::Listening);
            self.metrics.listening.set(1);
            let opened = Instant::now();
            let mut received = 0u64;
            let end = self.read(items, progress, outlets, stop, lost, &mut received).await;
            self.metrics.listening.set(0);
            let error = match end {
                ReadEnd::Ended(ended) => return ended,
                ReadEnd::Stalled => {
                    self.metrics.stalls.inc();
                    self.update(|report| report.stalls += 1);
                    BackendError::Unavailable(format!(
                        "the stream brought neither item nor heartbeat for {}; opened again",
                        humantime::format_duration(self.settings.stall_after)
                    ))
                }
                // The backend gave up on the stream. One that brought something, or lasted,
                // is opened again at once; one that brought nothing and did not last counts
                // as a failed attempt, so that a backend that accepts subscriptions only to
                // break them is tried ever more rarely too.
                ReadEnd::Closed(error) if received > 0 || opened.elapsed() >= SETTLED => {
                    failures = 0;
                    tracing::debug!(
                        topic = self.key.topic,
                        ?error,
                        "the subscription ended; subscribing again"
                    );
                    continue;
                }
                ReadEnd::Closed(error) => error.unwrap_or_else(|| {
                    BackendError::Unavailable("the subscription broke as soon as it opened".to_owned())
                }),
            };
            failures += 1;
            self.failed_to_subscribe(&error, failures);
            if let Some(ended) = pause(backoff.delay_ms(failures), stop, lost).await {
                return ended;
            }
        }
    }

    fn failed_to_subscribe(&self, error: &BackendError, failures: u32) {
        self.metrics.subscribe_failures.inc();
        self.update(|report| {
            report.state = StreamState::Failing;
            report.last_error = Some(error.to_string());
            report.failed_attempts = failures;
        });
        // The first failure, then ever more rarely: a topic that stays unreachable for a day
        // logs a few dozen lines, not thousands.
        if failures.is_power_of_two() {
            if error.is_retryable() {
                tracing::warn!(source = %self.source, topic = self.key.topic, %error, failures, "cannot subscribe to the topic; retrying");
            } else {
                tracing::error!(source = %self.source, topic = self.key.topic, %error, failures, "cannot subscribe to the topic; retrying");
            }
        }
    }

    /// Reads the stream until the relay stops, the lease is lost, the stream ends, or it
    /// stalls, counting the new items (not repeats) in `received`.
    async fn read(
        &self,
        mut items: ItemStream,
        progress: &Arc<Mutex<Progress>>,
        outlets: &Outlets,
        stop: &CancellationToken,
        lost: &CancellationToken,
        received: &mut u64,
    ) -> ReadEnd {
        let stall_after = self.settings.stall_after;
        let stalled = tokio::time::sleep(stall_after);
        tokio::pin!(stalled);
        loop {
            let event = tokio::select! {
                biased;
                () = stop.cancelled() => return ReadEnd::Ended(Ended::Stopped),
                () = lost.cancelled() => return ReadEnd::Ended(Ended::LeaseLost),
                event = items.next() => event,
                () = &mut stalled => return ReadEnd::Stalled,
            };
            stalled.as_mut().reset(Instant::now() + stall_after);
            let item = match event {
                None => return ReadEnd::Closed(None),
                Some(StreamEvent::Broken(error)) => return ReadEnd::Closed(Some(error)),
                Some(StreamEvent::Heartbeat) => {
                    self.metrics.heartbeats.inc();
                    self.update(|report| report.last_heartbeat_ms = Some(crate::common::now_ms()));
                    continue;
                }
                Some(StreamEvent::Discontinuity { last, new, new_page }) => {
                    self.discontinuity(last, new, new_page, progress);
                    continue;
                }
                Some(StreamEvent::Item(item)) => item,
            };
            let position = item.position;
            if !self.take(&item, progress) {
                continue;
            }
            *received += 1;
            if *received == 1 {
                self.update(|report| (report.failed_attempts, report.last_error) = (0, None));
            }
            if let Some(refusal) = self.too_large(&item) {
                settle(Err(refusal), Instant::now(), &self.source, &self.metrics);
                lock(progress).done(position);
                continue;
            }
            let received_at = Instant::now();
            let message = item_message(&self.key, item, &self.metrics);
            let can_hold = self.relay.load().can_hold();
            if outlets.put((position, message, received_at), can_hold, &self.metrics).await.is_err() {
                return ReadEnd::Ended(Ended::Stopped);
            }
        }
    }

    fn set_owned(&self, owned: bool) {
        self.metrics.owned.set(i64::from(owned));
        self.update(|report| report.owned = owned);
    }

    pub(super) fn update(&self, change: impl FnOnce(&mut StreamReport)) {
        change(&mut self.report.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    }
}

/// Waits `ms` before the next attempt, or returns early (`Some`) when the relay stops or the
/// lease is lost.
async fn pause(ms: u64, stop: &CancellationToken, lost: &CancellationToken) -> Option<Ended> {
    tokio::select! {
        () = stop.cancelled() => Some(Ended::Stopped),
        () = lost.cancelled() => Some(Ended::LeaseLost),
        () = tokio::time::sleep(std::time::Duration::from_millis(ms)) => None,
    }
}
