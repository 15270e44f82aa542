//! Which replicas listen to a subscription, so that its topics are shared out among them
//! rather than all going to whichever replica started first.
//!
//! - Each replica holds one of [`SLOTS`] member keys in the subscription's cache
//!   (`topic-relay:member:<subscription>:<slot>`, holding its replica id, with the lease
//!   TTL), taken and renewed as leases are, three times per TTL.
//! - At each renewal it reads every slot: the replicas found there are the live members.
//! - Each topic's preferred owner is chosen by rendezvous hashing over the live members,
//!   with bounded loads: topic by topic, in the order the configuration lists them, the
//!   member whose hash with the topic's name is highest among those holding fewer than their
//!   share (the topics divided by the members, rounded up). Every replica that sees the same
//!   members makes the same choice; the shares differ by at most one topic; and a member
//!   joining or leaving moves little more than its own share.
//!
//! The topic's lease still decides who owns it: a preferred owner takes a free lease, and an
//! owner that is no longer preferred hands it over (checkpoint written, lease released), so
//! no topic is ever listened to by two replicas at once, whatever each one sees. It hands
//! over only once the preferred member claims the topic (see [`super::lease`]): a member
//! killed without a goodbye stays in the slots until its key expires, and must not be handed
//! a topic it will never take. While the members cannot be read, nobody is preferred, and
//! replicas take free leases as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::lease::RELEASED;
use crate::backend::{Backend, SetCondition};

/// Member keys per subscription: the most replicas that share its topics.
pub const SLOTS: usize = 16;

/// What this replica knows of a topic's preferred owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    /// This replica.
    Mine,
    /// Another live member.
    Theirs,
    /// The members are not known (not read yet, or unreadable): take a free lease.
    Unknown,
}

/// The live members of one subscription, as this replica last read them.
#[derive(Clone)]
pub struct Membership {
    replica: String,
    live: Arc<Mutex<View>>,
}

/// The subscription's topics, the members last read, and each topic's preferred owner among
/// them.
#[derive(Default)]
struct View {
    topics: Vec<String>,
    members: Vec<String>,
    owners: HashMap<String, String>,
}

impl Membership {
    /// This replica's membership of `subscription`, kept in `cache` with `ttl`, and the
    /// `Keeper` that joins and keeps it once run.
    pub fn new(
        backend: Arc<dyn Backend>,
        cache: &str,
        subscription: &str,
        topics: &[String],
        replica: &str,
        ttl: Duration,
    ) -> (Membership, Keeper) {
        let view = View { topics: topics.to_vec(), ..View::default() };
        let membership = Membership { replica: replica.to_owned(), live: Arc::new(Mutex::new(view)) };
        let keeper = Keeper {
            backend,
            cache: cache.to_owned(),
            prefix: format!("topic-relay:member:{subscription}:"),
            holder: replica.as_bytes().to_vec(),
            ttl,
            slot: None,
            live: membership.live.clone(),
        };
        (membership, keeper)
    }

    /// Membership of this replica alone, for streams that share nothing: every topic is
    /// its own.
    pub fn alone(replica: &str) -> Membership {
        Membership { replica: replica.to_owned(), live: Arc::default() }
    }

    /// The preferred owner of `topic` among the live members.
    pub fn preference(&self, topic: &str) -> Preference {
        let view = self.view();
        match view.owners.get(topic) {
            None => Preference::Unknown,
            Some(owner) if *owner == self.replica => Preference::Mine,
            Some(_) => Preference::Theirs,
        }
    }

    /// The preferred owner of `topic` when it is another live member: the one to hand the
    /// topic over to, once it claims it.
    pub fn preferred_elsewhere(&self, topic: &str) -> Option<String> {
        self.view().owners.get(topic).filter(|owner| **owner != self.replica).cloned()
    }

    /// Shares `topics` from now on, as a reload changed them: each topic's owner is chosen
    /// again among the members last read.
    pub fn set_topics(&self, topics: &[String]) {
        let mut view = self.view();
        view.owners = assign(&view.members, topics);
        view.topics = topics.to_vec();
    }

    /// The live members, as last read.
    pub fn members(&self) -> Vec<String> {
        self.view().members.clone()
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Each of `topics`' preferred owner among `members`, by rendezvous hashing with bounded
/// loads (see the module's comment); empty without members.
pub fn assign(members: &[String], topics: &[String]) -> HashMap<String, String> {
    let mut owners = HashMap::new();
    if members.is_empty() {
        return owners;
    }
    let share = topics.len().div_ceil(members.len());
    let mut load: HashMap<&str, usize> = HashMap::new();
    for topic in topics {
        let mut ranked: Vec<&String> = members.iter().collect();
        ranked.sort_by_key(|member| std::cmp::Reverse(score(member, topic)));
        let owner = ranked
            .into_iter()
            .find(|member| load.get(member.as_str()).copied().unwrap_or(0) < share)
            .expect("the shares add up to at least the topics");
        *load.entry(owner.as_str()).or_default() += 1;
        owners.insert(topic.clone(), owner.clone());
    }
    owners
}

/// A hash of the member and the topic that every replica computes alike.
fn score(member: &str, topic: &str) -> u64 {
    let digest = Sha256::new().chain_update(member).chain_update([0]).chain_update(topic).finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest holds 8 bytes"))
}

/// Keeps this replica's slot and reads the others'.
pub struct Keeper {
    backend: Arc<dyn Backend>,
    cache: String,
    prefix: String,
    holder: Vec<u8>,
    ttl: Duration,
    slot: Option<usize>,
    live: Arc<Mutex<View>>,
}

impl Keeper {
    /// Holds a slot and reads the members, three times per TTL, until `stop`; then gives
    /// the slot up, so that the others see this replica leave at once.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut every = tokio::time::interval(self.ttl / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = every.tick() => {}
            }
            self.hold_a_slot().await;
            self.read_members().await;
        }
        self.release().await;
    }

    fn key(&self, slot: usize) -> String {
        format!("{}{slot}", self.prefix)
    }

    /// Renews the slot held, or takes the first free one.
    async fn hold_a_slot(&mut self) {
        if let Some(slot) = self.slot {
            let renewed = self.set(slot, SetCondition::Equal(self.holder.clone())).await;
            if renewed == Some(true) {
                return;
            }
            if renewed == Some(false) {
                self.slot = None;
            }
        }
        for slot in 0..SLOTS {
            if self.set(slot, SetCondition::AbsentOrEqual(self.holder.clone())).await == Some(true) {
                self.slot = Some(slot);
                return;
            }
        }
        tracing::warn!(
            slots = SLOTS,
            "every member slot of the subscription is taken; this replica only stands by"
        );
    }

    async fn set(&self, slot: usize, condition: SetCondition) -> Option<bool> {
        let key = self.key(slot);
        match self.backend.set_if(&self.cache, &key, &self.holder, &condition, Some(self.ttl)).await {
            Ok(taken) => Some(taken),
            Err(error) => {
                tracing::debug!(key, %error, "cannot keep the member slot");
                None
            }
        }
    }

    /// Reads every slot; the members are forgotten (nobody preferred) when they cannot be read.
    async fn read_members(&self) {
        let reads = (0..SLOTS).map(|slot| {
            let key = self.key(slot);
            async move { self.backend.get(&self.cache, &key).await }
        });
        let mut members = Vec::new();
        for read in futures::future::join_all(reads).await {
            match read {
                Ok(Some(value)) if value != RELEASED => {
                    members.push(String::from_utf8_lossy(&value).into_owned())
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "cannot read the subscription's members");
                    members.clear();
                    break;
                }
            }
        }
        members.sort();
        members.dedup();
        let mut view = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        view.owners = assign(&members, &view.topics);
        view.members = members;
    }

    async fn release(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        let condition = SetCondition::Equal(self.holder.clone());
        let key = self.key(slot);
        let released =
            self.backend.set_if(&self.cache, &key, RELEASED, &condition, Some(Duration::from_millis(1)));
        if let Err(error) = released.await {
            tracing::debug!(key, %error, "cannot give up the member slot; it expires by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    fn shares(owners: &HashMap<String, String>, members: &[String]) -> Vec<usize> {
        members.iter().map(|member| owners.values().filter(|owner| *owner == member).count()).collect()
    }

    #[test]
    fn topics_are_shared_within_one_of_even_and_a_leaving_member_moves_little_else() {
        let topics: Vec<String> = (0..30).map(|n| format!("room-{n}")).collect();
        for run in 0..20 {
            // Replica ids end in a random suffix; any ids must share evenly.
            let three: Vec<String> =
                (0..3).map(|n| format!("host-{run}-{n}-{:x}", rand::random::<u32>())).collect();
            let owners = assign(&three, &topics);
            assert_eq!(shares(&owners, &three), [10, 10, 10], "{three:?}");
            let two = three[..2].to_vec();
            let after = assign(&two, &topics);
            assert_eq!(shares(&after, &two), [15, 15]);
            let moved = topics
                .iter()
                .filter(|topic| owners[*topic] != three[2] && after[*topic] != owners[*topic])
                .count();
            assert!(moved <= 6, "{moved} topics of the remaining members moved");
        }
        assert!(assign(&[], &topics).is_empty());
    }

    #[tokio::test]
    async fn replicas_find_each_other_and_agree_on_each_topics_owner() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let stop = CancellationToken::new();
        let ttl = Duration::from_millis(300);
        let joined: Vec<Membership> = (0..3)
            .map(|n| {
                let topics = ["a", "b", "c", "d"].map(String::from);
                let (membership, keeper) =
                    Membership::new(backend.clone(), "chat", "inbox", &topics, &format!("replica-{n}"), ttl);
                tokio::spawn(keeper.run(stop.clone()));
                membership
            })
            .collect();
        let mut agreed = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if joined.iter().all(|membership| membership.members().len() == 3) {
                agreed = true;
                break;
            }
        }
        assert!(agreed, "{:?}", joined.iter().map(Membership::members).collect::<Vec<_>>());
        for topic in ["a", "b", "c", "d"] {
            let mine =
                joined.iter().filter(|membership| membership.preference(topic) == Preference::Mine).count();
            assert_eq!(mine, 1, "{topic} has exactly one preferred owner");
        }
        // A reload adds a topic: it has an owner at once, among the members already read.
        let topics = ["a", "b", "d", "e"].map(String::from);
        joined.iter().for_each(|membership| membership.set_topics(&topics));
        for topic in ["a", "b", "d", "e"] {
            let mine =
                joined.iter().filter(|membership| membership.preference(topic) == Preference::Mine).count();
            assert_eq!(mine, 1, "{topic} has exactly one preferred owner after the change");
        }
        assert!(joined.iter().all(|membership| membership.preference("c") == Preference::Unknown));
        stop.cancel();
    }
}
