//! Replay protection, the last check of the accept stage: a signed body seen before while
//! its event is still fresh is a replay. The verified signature is the key, since two
//! requests with the same verified signature carry the same signed body.
//!
//! Each accepted signature is remembered exactly until its event can no longer pass the
//! freshness check (`publish_timestamp + max_age`), then forgotten by a sweep once a second.
//! Checking and remembering are one atomic insert into a concurrent map, so two copies of
//! a request can never both be taken, however they interleave, and the hot path takes no
//! lock of ours.
//!
//! Up to `delivery.dedup_capacity` signatures are remembered. What happens past it is the
//! operator's choice (`delivery.dedup_when_full`), since either way something is given up:
//! Momento never retries, so refusing loses the event, and accepting without remembering
//! lets a replay of it through.
//!
//! With `dedup = "momento"`, each first sighting is also set-if-absent in Momento Cache, so
//! that replicas behind one load balancer share what they have seen.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::verify::VerifiedSignature;

/// Bytes of the signature kept as the key. A replay carries the whole signature, so it is
/// always caught; two distinct events would share a 128-bit HMAC prefix with a probability
/// of about 2^-128 per pair, and it halves the memory per signature.
const KEY_BYTES: usize = 16;

/// Key prefix of seen signatures in the shared cache.
const SHARED_KEY_PREFIX: &str = "topic-relay:seen:";

/// The shared check may take this long before it is skipped: Momento's deadline is 5 s, and
/// the event's own steps need the time.
pub const SHARED_CHECK_LIMIT: Duration = Duration::from_millis(500);

/// The remembered signatures are split over this many maps, by the first byte of the
/// signature (uniform, since it is an HMAC). A map that outgrows its table moves to one twice
/// the size, and the fresh memory is faulted in by the requests that insert next; one map of a
/// million signatures would stall every request for a fifth of a second while it does, where
/// each of these stalls only the few requests that land on it, for a few milliseconds.
const SHARDS: usize = 64;

/// How often forgotten signatures are swept away.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One shard of the remembered signatures. Hashed with foldhash rather than the standard
/// library's SipHash, which costs several times more per key: SipHash resists keys chosen to
/// collide, but these keys are verified HMACs, which nobody without the secret can choose.
type SeenMap = scc::HashMap<[u8; KEY_BYTES], u32, foldhash::fast::RandomState>;

/// What the replay check does once it remembers `dedup_capacity` signatures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    /// Accept the event without remembering it: nothing is lost, but a replay of it would
    /// get through (to Momento dedup, if on). Counted in `topic_relay_replay_unremembered_total`.
    #[default]
    Accept,
    /// Refuse the event with 503 `replay_memory_full`: no replay gets through, but Momento does
    /// not retry, so the event is lost. Counted in `topic_relay_replay_refused_total`.
    Refuse,
}

/// Where the shared seen-set lives.
pub struct SharedSeenSet {
    /// The Momento backend.
    pub backend: Arc<dyn Backend>,
    /// The cache holding the keys.
    pub cache: String,
}

/// What the replay check made of a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// Seen for the first time; it is remembered until its event goes stale.
    First,
    /// Seen before, while its event was still fresh: a replay.
    Replay,
    /// Not seen before, but the memory is full and `when_full = "accept"`: taken, not remembered.
    Unremembered,
    /// Not seen before, but the memory is full and `when_full = "refuse"`.
    Full,
}

/// Remembers signatures while their events are fresh.
pub struct ReplayGuard {
    /// Signature prefix -> the second (since the epoch) after which it is forgotten, in
    /// [`SHARDS`] maps.
    seen: Box<[SeenMap]>,
    remembered: AtomicU64,
    capacity: u64,
    when_full: WhenFull,
    shared: Option<SharedSeenSet>,
}

impl ReplayGuard {
    /// Remembers up to `capacity` signatures; what happens past it is `when_full`.
    pub fn new(capacity: u64, when_full: WhenFull, shared: Option<SharedSeenSet>) -> Self {
        let seen = (0..SHARDS).map(|_| SeenMap::default()).collect();
        ReplayGuard { seen, remembered: AtomicU64::new(0), capacity, when_full, shared }
    }

    /// Sweeps forgotten signatures once a second, on a thread of its own, for as long as the
    /// guard lives. A sweep walks the whole map, which must not hold up a runtime worker.
    pub fn sweep_in_background(self: &Arc<Self>) {
        let guard = Arc::downgrade(self);
        let spawned = std::thread::Builder::new().name("replay-sweep".into()).spawn(move || {
            loop {
                std::thread::sleep(SWEEP_INTERVAL);
                let Some(guard) = guard.upgrade() else { return };
                guard.sweep(crate::accept::now_ms());
            }
        });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the replay sweep; signatures are never forgotten");
        }
    }

    /// Signatures remembered now.
    pub fn remembered(&self) -> u64 {
        self.remembered.load(Ordering::Relaxed)
    }

    /// Checks `signature` and remembers it until `forget_after_ms` (ms since the epoch: its
    /// `publish_timestamp` plus the webhook's `max_age`). Exactly one of any number of
    /// concurrent calls with the same signature gets [`Sighting::First`].
    pub async fn check(&self, signature: &VerifiedSignature, forget_after_ms: u64) -> Sighting {
        let sighting = self.check_locally(signature, forget_after_ms);
        if sighting != Sighting::First {
            return sighting;
        }
        match &self.shared {
            Some(shared) => shared.check(signature, forget_after_ms).await,
            None => Sighting::First,
        }
    }

    fn check_locally(&self, signature: &VerifiedSignature, forget_after_ms: u64) -> Sighting {
        let key: [u8; KEY_BYTES] = signature.0[..KEY_BYTES].try_into().expect("a signature has 32 bytes");
        // Rounded up, so that a signature is never forgotten before its event goes stale.
        let forget_after = u32::try_from(forget_after_ms.div_ceil(1000)).unwrap_or(u32::MAX);
        let seen = &self.seen[usize::from(key[0]) % SHARDS];
        if self.remembered.load(Ordering::Relaxed) >= self.capacity {
            return match (seen.contains_sync(&key), self.when_full) {
                (true, _) => Sighting::Replay,
                (false, WhenFull::Accept) => Sighting::Unremembered,
                (false, WhenFull::Refuse) => Sighting::Full,
            };
        }
        match seen.insert_sync(key, forget_after) {
            Ok(()) => {
                self.remembered.fetch_add(1, Ordering::Relaxed);
                Sighting::First
            }
            Err(_) => Sighting::Replay,
        }
    }

    /// Forgets every signature whose event is stale at `now_ms`.
    pub fn sweep(&self, now_ms: u64) {
        let now = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
        let mut forgotten = 0;
        for seen in &self.seen {
            seen.retain_sync(|_, forget_after| {
                let keep = *forget_after >= now;
                forgotten += u64::from(!keep);
                keep
            });
        }
        self.remembered.fetch_sub(forgotten, Ordering::Relaxed);
    }
}

impl SharedSeenSet {
    async fn check(&self, signature: &VerifiedSignature, forget_after_ms: u64) -> Sighting {
        let key = format!("{SHARED_KEY_PREFIX}{}", const_hex::encode(signature.0));
        let ttl = Duration::from_millis(forget_after_ms.saturating_sub(crate::accept::now_ms()).max(1000));
        let check = self.backend.set_if_absent(&self.cache, &key, b"1", Some(ttl));
        match tokio::time::timeout(SHARED_CHECK_LIMIT, check).await {
            Ok(Ok(true)) => Sighting::First,
            Ok(Ok(false)) => Sighting::Replay,
            // Refusing would lose the event for good, since Momento never retries; a replay
            // that slips through here is still caught by this replica's memory.
            Ok(Err(error)) => {
                crate::warn_throttled!(%error, "the shared replay check failed; accepting the event");
                Sighting::First
            }
            Err(_elapsed) => {
                crate::warn_throttled!("the shared replay check took too long; accepting the event");
                Sighting::First
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    /// `forget_after_ms` of an event published now with a 60 s `max_age`.
    fn fresh() -> u64 {
        crate::accept::now_ms() + 60_000
    }

    fn signature(n: u32) -> VerifiedSignature {
        let mut bytes = [0; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        VerifiedSignature(bytes)
    }

    #[tokio::test]
    async fn a_signature_is_new_once_and_a_replay_after() {
        let guard = ReplayGuard::new(100, WhenFull::Accept, None);
        assert_eq!(guard.check(&signature(1), fresh()).await, Sighting::First);
        assert_eq!(guard.check(&signature(1), fresh()).await, Sighting::Replay);
        assert_eq!(guard.check(&signature(2), fresh()).await, Sighting::First);
        assert_eq!(guard.remembered(), 2);
    }

    #[tokio::test]
    async fn a_replay_is_refused_after_more_distinct_events_than_the_old_capacity() {
        // The old seen-set was an LRU of 200,000 signatures; this many newer ones evicted the
        // first, and its replay got through while the event was still fresh.
        const OLD_CAPACITY: u32 = 200_000;
        let guard = ReplayGuard::new(1_000_000, WhenFull::Accept, None);
        let first = signature(u32::MAX);
        assert_eq!(guard.check(&first, fresh()).await, Sighting::First);
        for n in 0..=OLD_CAPACITY {
            assert_eq!(guard.check_locally(&signature(n), fresh()), Sighting::First);
        }
        guard.sweep(crate::accept::now_ms());
        assert_eq!(guard.check(&first, fresh()).await, Sighting::Replay);
    }

    #[test]
    fn a_signature_is_forgotten_only_once_its_event_is_stale() {
        let guard = ReplayGuard::new(100, WhenFull::Accept, None);
        let forget_after_ms = 1_000_000_500;
        assert_eq!(guard.check_locally(&signature(1), forget_after_ms), Sighting::First);
        guard.sweep(forget_after_ms);
        guard.sweep(forget_after_ms + 499);
        assert_eq!(guard.check_locally(&signature(1), forget_after_ms), Sighting::Replay);
        guard.sweep(forget_after_ms + 1_500);
        assert_eq!(guard.remembered(), 0);
        assert_eq!(guard.check_locally(&signature(1), forget_after_ms), Sighting::First);
    }

    #[test]
    fn signatures_in_every_shard_are_remembered_and_swept() {
        let guard = ReplayGuard::new(1_000, WhenFull::Accept, None);
        let forget_after_ms = 1_000_000_000;
        let spread = |first: u8| {
            let mut bytes = [7; 32];
            bytes[0] = first;
            VerifiedSignature(bytes)
        };
        for first in 0..=u8::MAX {
            assert_eq!(guard.check_locally(&spread(first), forget_after_ms), Sighting::First);
        }
        for first in 0..=u8::MAX {
            assert_eq!(guard.check_locally(&spread(first), forget_after_ms), Sighting::Replay);
        }
        assert_eq!(guard.remembered(), 256);
        guard.sweep(forget_after_ms + 1_000);
        assert_eq!(guard.remembered(), 0);
        assert_eq!(guard.check_locally(&spread(200), forget_after_ms), Sighting::First);
    }

    #[test]
    fn when_full_a_new_signature_is_accepted_unremembered_or_refused_and_a_replay_still_caught() {
        for (when_full, expected) in
            [(WhenFull::Accept, Sighting::Unremembered), (WhenFull::Refuse, Sighting::Full)]
        {
            let guard = ReplayGuard::new(2, when_full, None);
            assert_eq!(guard.check_locally(&signature(1), fresh()), Sighting::First);
            assert_eq!(guard.check_locally(&signature(2), fresh()), Sighting::First);
            assert_eq!(guard.check_locally(&signature(3), fresh()), expected);
            assert_eq!(guard.check_locally(&signature(1), fresh()), Sighting::Replay);
            assert_eq!(guard.remembered(), 2);
        }
    }

    #[test]
    fn concurrent_copies_of_one_signature_are_taken_exactly_once() {
        let guard = Arc::new(ReplayGuard::new(1_000_000, WhenFull::Accept, None));
        for round in 0..200 {
            let barrier = Arc::new(std::sync::Barrier::new(8));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (guard, barrier) = (guard.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        guard.check_locally(&signature(round), fresh()) == Sighting::First
                    })
                })
                .collect();
            let firsts =
                threads.into_iter().map(|thread| thread.join().unwrap()).filter(|first| *first).count();
            assert_eq!(firsts, 1, "round {round}");
        }
    }

    #[tokio::test]
    async fn replicas_sharing_a_seen_set_catch_each_others_replays() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let replica = || {
            let shared = SharedSeenSet { backend: backend.clone(), cache: "chat".into() };
            ReplayGuard::new(100, WhenFull::Accept, Some(shared))
        };
        let (first, second) = (replica(), replica());
        assert_eq!(first.check(&signature(7), fresh()).await, Sighting::First);
        assert_eq!(second.check(&signature(7), fresh()).await, Sighting::Replay);
    }
}
