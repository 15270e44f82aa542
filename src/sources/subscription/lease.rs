//! One owner per topic across replicas: a lease key in the subscription's cache, holding
//! the owner's replica id, with a TTL.
//!
//! - Taken when absent (or already this replica's: a retry after a lost answer is safe).
//! - Renewed only while it still holds this replica's id, three times per TTL.
//! - Released on shutdown by letting it expire at once, only if it is still this replica's.
//!
//! A replica that cannot renew within the TTL stops listening: by then another may own it.
//!
//! A replica that is the topic's preferred owner but finds the lease held writes a claim
//! (`topic-relay:claim:<subscription>:<topic>`, holding its replica id, with half the TTL)
//! at each try. The owner hands the topic over only to a preferred member whose claim it
//! reads: a live one, that is waiting for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::membership::Membership;

use crate::backend::{Backend, BackendError, SetCondition};

/// What a released lease (or member slot) holds for the instant before it expires.
pub(super) const RELEASED: &[u8] = b"released";

/// One (subscription, topic) lease, as seen by this replica.
pub struct Lease {
    backend: Arc<dyn Backend>,
    cache: String,
    key: String,
    claim_key: String,
    holder: Vec<u8>,
    ttl: Duration,
    /// Until when this replica surely holds it: the TTL from the start of the last
    /// successful take or renewal.
    held_until: Option<Instant>,
}

impl Lease {
    /// The lease on `topic` of `subscription`, kept in `cache`, for replica `holder`.
    pub fn new(
        backend: Arc<dyn Backend>,
        cache: &str,
        subscription: &str,
        topic: &str,
        holder: &str,
        ttl: Duration,
    ) -> Self {
        Lease {
            backend,
            cache: cache.to_owned(),
            key: format!("topic-relay:lease:{subscription}:{topic}"),
            claim_key: format!("topic-relay:claim:{subscription}:{topic}"),
            holder: holder.as_bytes().to_vec(),
            ttl,
            held_until: None,
        }
    }

    /// How often to renew: three times per TTL, so that two lost renewals in a row still
    /// leave time for a third.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// How often a replica without the lease tries to take it.
    pub fn standby_every(&self) -> Duration {
        (self.ttl / 4).max(Duration::from_millis(50))
    }

    /// Tries to take the lease; true when this replica holds it.
    pub async fn take(&mut self) -> Result<bool, BackendError> {
        let started = Instant::now();
        let condition = SetCondition::AbsentOrEqual(self.holder.clone());
        let taken =
            self.backend.set_if(&self.cache, &self.key, &self.holder, &condition, Some(self.ttl)).await?;
        self.held_until = taken.then_some(started + self.ttl);
        Ok(taken)
    }

    /// Renews the lease. `Ok(false)` when another replica holds it now; an error when
    /// Momento did not answer, which is only fatal once [`Lease::expired`].
    pub async fn renew(&mut self) -> Result<bool, BackendError> {
        let started = Instant::now();
        let condition = SetCondition::Equal(self.holder.clone());
        let renewed =
            self.backend.set_if(&self.cache, &self.key, &self.holder, &condition, Some(self.ttl)).await?;
        if renewed {
            self.held_until = Some(started + self.ttl);
        } else {
            self.held_until = None;
        }
        Ok(renewed)
    }

    /// Says that this replica, the topic's preferred owner, is waiting for the lease. The
    /// claim lasts half the TTL, so it outlives the pause between two tries, and a replica
    /// that dies while waiting is not handed the topic for long after.
    pub async fn claim(&self) -> Result<(), BackendError> {
        self.backend.set(&self.cache, &self.claim_key, &self.holder, Some(self.ttl / 2)).await
    }

    /// Whether `replica` claims the topic now. A claim that cannot be read counts as none:
    /// the owner keeps the topic and asks again at the next renewal.
    pub async fn claimed_by(&self, replica: &str) -> bool {
        match self.backend.get(&self.cache, &self.claim_key).await {
            Ok(claim) => claim.as_deref() == Some(replica.as_bytes()),
            Err(error) => {
                tracing::debug!(key = self.claim_key, %error, "cannot read the topic's claim");
                false
            }
        }
    }

    /// Whether the TTL ran out since the last successful renewal.
    pub fn expired(&self) -> bool {
        self.held_until.is_none_or(|until| Instant::now() >= until)
    }

    /// Gives the lease up, so that another replica can take it at once.
    pub async fn release(&mut self) {
        if self.held_until.take().is_none() {
            return;
        }
        let condition = SetCondition::Equal(self.holder.clone());
        let released =
            self.backend.set_if(&self.cache, &self.key, RELEASED, &condition, Some(Duration::from_millis(1)));
        if let Err(error) = released.await {
            tracing::warn!(key = self.key, %error, "cannot release the lease; it expires by itself");
        }
    }
}

/// What tells a topic's owner to hand it over: another live member is preferred, and claims
/// it.
pub struct Handover {
    /// The subscription's members, as this replica last read them.
    pub membership: Membership,
    /// The topic the lease is for.
    pub topic: String,
    /// Set when the owner hands the topic over, rather than losing it.
    pub handing_over: Arc<AtomicBool>,
}

/// Keeps the lease while the stream listens; cancels `lost` when another replica may hold
/// it, or when another replica is the topic's preferred owner now and claims it (a
/// hand-over). Hands the lease back when the stream is done with it.
pub async fn keep(
    mut lease: Lease,
    lost: CancellationToken,
    stop: CancellationToken,
    handover: Handover,
) -> Lease {
    let mut renewals = tokio::time::interval(lease.renew_every());
    renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renewals.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return lease,
            () = lost.cancelled() => return lease,
            _ = renewals.tick() => {}
        }
        match lease.renew().await {
            Ok(true) => {
                let Some(preferred) = handover.membership.preferred_elsewhere(&handover.topic) else {
                    continue;
                };
                if lease.claimed_by(&preferred).await {
                    handover.handing_over.store(true, Ordering::Release);
                    lost.cancel();
                }
            }
            Ok(false) => lost.cancel(),
            Err(error) if lease.expired() => {
                tracing::warn!(%error, "cannot renew the lease before it ran out");
                lost.cancel();
            }
            Err(error) => tracing::debug!(%error, "cannot renew the lease; trying again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;
    use crate::sources::subscription::membership;

    fn lease(backend: &Arc<MemoryBackend>, holder: &str) -> Lease {
        Lease::new(backend.clone(), "chat", "inbox", "topic 1", holder, Duration::from_secs(10))
    }

    #[tokio::test]
    async fn one_replica_holds_the_lease_until_it_releases_it() {
        let backend = Arc::new(MemoryBackend::new());
        let (mut first, mut second) = (lease(&backend, "a"), lease(&backend, "b"));
        assert!(first.take().await.unwrap());
        assert!(first.take().await.unwrap(), "taking it again is harmless");
        assert!(!second.take().await.unwrap());
        assert!(first.renew().await.unwrap());
        assert!(!second.renew().await.unwrap(), "only the holder renews");
        first.release().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(second.take().await.unwrap());
        assert!(!first.renew().await.unwrap());
        assert!(first.expired());
    }

    #[tokio::test]
    async fn the_owner_hands_a_topic_over_only_to_a_preferred_member_that_claims_it() {
        let backend = Arc::new(MemoryBackend::new());
        let ttl = Duration::from_millis(300);
        let members = ["ghost".to_owned(), "owner".to_owned()];
        let topic = (0..)
            .map(|n| format!("room-{n}"))
            .find(|topic| membership::assign(&members, std::slice::from_ref(topic))[topic] == "ghost")
            .unwrap();
        // A member killed without a goodbye: its slot holds its id until the key expires.
        let ghost_slot = "topic-relay:member:inbox:0";
        backend.set("chat", ghost_slot, b"ghost", Some(Duration::from_secs(60))).await.unwrap();
        let stop = CancellationToken::new();
        let (membership, keeper) =
            Membership::new(backend.clone(), "chat", "inbox", std::slice::from_ref(&topic), "owner", ttl);
        tokio::spawn(keeper.run(stop.clone()));
        for _ in 0..100 {
            if membership.members().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(membership.members(), members);

        let mut lease = Lease::new(backend.clone(), "chat", "inbox", &topic, "owner", ttl);
        assert!(lease.take().await.unwrap());
        let lost = CancellationToken::new();
        let handing_over = Arc::new(AtomicBool::new(false));
        let handover = Handover { membership, topic: topic.clone(), handing_over: handing_over.clone() };
        tokio::spawn(keep(lease, lost.clone(), stop.clone(), handover));
        // Six renewals, each seeing the ghost preferred.
        tokio::time::sleep(ttl * 2).await;
        assert!(!lost.is_cancelled(), "the topic was handed to a member that never claimed it");

        let waiting = Lease::new(backend.clone(), "chat", "inbox", &topic, "ghost", ttl);
        waiting.claim().await.unwrap();
        tokio::time::timeout(ttl, lost.cancelled()).await.expect("handed over once claimed");
        assert!(handing_over.load(Ordering::Acquire));
        stop.cancel();
    }
}
