//! Replay protection, the last check of the accept stage: a signed body seen before within
//! the freshness window is a replay. The verified signature is the key, since two requests
//! with the same verified signature carry the same signed body.
//!
//! Always remembered in memory (bounded; the least recently seen go first when full). With
//! `dedup = "momento"`, also in Momento Cache with set-if-absent, so that several replicas
//! behind one load balancer share what they have seen.

use std::sync::Arc;
use std::time::Duration;

use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use crate::backend::Backend;
use crate::verify::VerifiedSignature;

/// Where the shared seen-set lives.
pub struct SharedSeenSet {
    /// The Momento backend.
    pub backend: Arc<dyn Backend>,
    /// The cache holding the keys.
    pub cache: String,
}

/// Remembers signatures for one freshness window.
pub struct ReplayGuard {
    seen: Cache<[u8; 32], ()>,
    window: Duration,
    shared: Option<SharedSeenSet>,
}

/// The shared check may take this long before it is skipped: Momento's deadline is 5 s, and
/// the event's own steps need the time.
pub const SHARED_CHECK_LIMIT: Duration = Duration::from_millis(500);

/// Key prefix of seen signatures in the shared cache.
const SHARED_KEY_PREFIX: &str = "topic-relay:seen:";

impl ReplayGuard {
    /// Remembers up to `capacity` signatures for `window` (the longest `max_age +
    /// max_future_skew` of any webhook: older replays fail the freshness check anyway).
    pub fn new(capacity: u64, window: Duration, shared: Option<SharedSeenSet>) -> Self {
        // Least recently seen go first: the signatures most likely to be replayed are the newest.
        let lru = EvictionPolicy::lru();
        let seen = Cache::builder().max_capacity(capacity).time_to_live(window).eviction_policy(lru).build();
        ReplayGuard { seen, window, shared }
    }

    /// Signatures remembered now (approximate: expiry and eviction run lazily).
    pub fn remembered(&self) -> u64 {
        self.seen.entry_count()
    }

    /// True the first time a signature is seen within the window; false for a replay.
    pub async fn first_sighting(&self, signature: &VerifiedSignature) -> bool {
        let fresh = self.seen.entry(signature.0).or_insert(()).is_fresh();
        if !fresh {
            return false;
        }
        let Some(shared) = &self.shared else { return true };
        let key = format!("{SHARED_KEY_PREFIX}{}", hex::encode(signature.0));
        let check = shared.backend.set_if_absent(&shared.cache, &key, b"1", Some(self.window));
        match tokio::time::timeout(SHARED_CHECK_LIMIT, check).await {
            Ok(Ok(first)) => first,
            // Refusing would lose the event for good, since Momento never retries; a replay
            // that slips through here is still caught by this replica's memory.
            Ok(Err(error)) => {
                tracing::warn!(%error, "the shared replay check failed; accepting the event");
                true
            }
            Err(_elapsed) => {
                tracing::warn!("the shared replay check took too long; accepting the event");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    const WINDOW: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_signature_is_new_once_and_a_replay_after() {
        let guard = ReplayGuard::new(100, WINDOW, None);
        assert!(guard.first_sighting(&VerifiedSignature([1; 32])).await);
        assert!(!guard.first_sighting(&VerifiedSignature([1; 32])).await);
        assert!(guard.first_sighting(&VerifiedSignature([2; 32])).await);
    }

    #[tokio::test]
    async fn when_full_the_newest_signatures_are_the_ones_kept() {
        let guard = ReplayGuard::new(100, WINDOW, None);
        let signature = |n: u32| {
            let mut bytes = [0; 32];
            bytes[..4].copy_from_slice(&n.to_be_bytes());
            VerifiedSignature(bytes)
        };
        for n in 0..1000 {
            guard.first_sighting(&signature(n)).await;
        }
        guard.seen.run_pending_tasks();
        let mut caught = 0;
        for n in 950..1000 {
            caught += usize::from(!guard.first_sighting(&signature(n)).await);
        }
        assert_eq!(caught, 50, "every recent replay is caught");
        assert!(guard.remembered() <= 100);
    }

    #[tokio::test]
    async fn replicas_sharing_a_seen_set_catch_each_others_replays() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let replica = || {
            let shared = SharedSeenSet { backend: backend.clone(), cache: "chat".into() };
            ReplayGuard::new(100, WINDOW, Some(shared))
        };
        let (first, second) = (replica(), replica());
        assert!(first.first_sighting(&VerifiedSignature([7; 32])).await);
        assert!(!second.first_sighting(&VerifiedSignature([7; 32])).await);
    }
}
