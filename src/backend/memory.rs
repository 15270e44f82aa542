//! The embedded backend: publishes go to the in-process bus (`bus`, watchable through
//! `GET /v1/subscribe/{cache}/{topic}`, and what the relay's subscriptions listen to); cache
//! items live in a map in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::BackendKind;
use super::bus::MemoryBus;
use super::{Backend, BackendError, ItemStream, Position, SetCondition};

enum Item {
    Value(Vec<u8>),
    List(VecDeque<Vec<u8>>),
}

struct Stored {
    item: Item,
    expires: Option<Instant>,
}

/// The embedded backend; clones share the same bus and store.
#[derive(Clone)]
pub struct MemoryBackend {
    bus: MemoryBus,
    store: Arc<Mutex<HashMap<(String, String), Stored>>>,
    default_ttl: Option<Duration>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty backend whose items live until replaced.
    pub fn new() -> Self {
        MemoryBackend { bus: MemoryBus::new(), store: Arc::default(), default_ttl: None }
    }

    /// An empty backend that gives items written without a TTL this one.
    pub fn with_default_ttl(default_ttl: Duration) -> Self {
        MemoryBackend { default_ttl: Some(default_ttl), ..Self::new() }
    }

    /// The publish bus, for the subscribe endpoint.
    pub fn bus(&self) -> MemoryBus {
        self.bus.clone()
    }

    /// Runs `f` on the live entry at `cache`/`key` (expired ones are removed first), all under
    /// one lock, so that a read-modify-write cannot interleave with another.
    fn with_entry<T>(&self, cache: &str, key: &str, f: impl FnOnce(&mut Entry<'_>) -> T) -> T {
        let mut store = self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = (cache.to_owned(), key.to_owned());
        let now = Instant::now();
        if store.get(&id).is_some_and(|stored| stored.expires.is_some_and(|at| at <= now)) {
            store.remove(&id);
        }
        let expires = |ttl: Option<Duration>| ttl.or(self.default_ttl).map(|ttl| now + ttl);
        f(&mut Entry { store: &mut store, id, expires: &expires })
    }

    /// The items of a list, oldest first (empty when there is none).
    pub fn list(&self, cache: &str, list: &str) -> Vec<Vec<u8>> {
        self.with_entry(cache, list, |entry| match entry.get() {
            Some(Item::List(items)) => items.iter().cloned().collect(),
            _ => Vec::new(),
        })
    }
}

/// One key of the store, while its lock is held.
struct Entry<'a> {
    store: &'a mut HashMap<(String, String), Stored>,
    id: (String, String),
    expires: &'a dyn Fn(Option<Duration>) -> Option<Instant>,
}

impl Entry<'_> {
    fn get(&self) -> Option<&Item> {
        self.store.get(&self.id).map(|stored| &stored.item)
    }

    fn put(&mut self, item: Item, ttl: Option<Duration>) {
        let expires = (self.expires)(ttl);
        self.store.insert(self.id.clone(), Stored { item, expires });
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Memory
    }

    async fn publish(&self, cache: &str, topic: &str, text: &str) -> Result<(), BackendError> {
        // Per event, and the text can hold users' data: debug only.
        tracing::debug!(cache, topic, text, "published on the embedded bus");
        // The relay publishes with its own key, so its items carry no token_id.
        self.bus.publish(cache, topic, text, "");
        Ok(())
    }

    async fn get(&self, cache: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.with_entry(cache, key, |entry| match entry.get() {
            Some(Item::Value(value)) => Ok(Some(value.clone())),
            Some(Item::List(_)) => Err(BackendError::Invalid(format!("{key} holds a list"))),
            None => Ok(None),
        })
    }

    async fn set(
        &self,
        cache: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        self.with_entry(cache, key, |entry| entry.put(Item::Value(value.to_vec()), ttl));
        Ok(())
    }

    async fn set_if_absent(
        &self,
        cache: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, BackendError> {
        self.set_if(cache, key, value, &SetCondition::Absent, ttl).await
    }

    async fn set_if(
        &self,
        cache: &str,
        key: &str,
        value: &[u8],
        condition: &SetCondition,
        ttl: Option<Duration>,
    ) -> Result<bool, BackendError> {
        self.with_entry(cache, key, |entry| {
            let holds = match entry.get() {
                Some(Item::Value(current)) => condition.holds_for(Some(current)),
                Some(Item::List(_)) => return Err(BackendError::Invalid(format!("{key} holds a list"))),
                None => condition.holds_for(None),
            };
            if holds {
                entry.put(Item::Value(value.to_vec()), ttl);
            }
            Ok(holds)
        })
    }

    /// The embedded bus keeps no history: `resume` is ignored.
    async fn subscribe(
        &self,
        cache: &str,
        topic: &str,
        _resume: Option<Position>,
    ) -> Result<ItemStream, BackendError> {
        Ok(self.bus.items(cache, topic))
    }

    async fn list_push_back(
        &self,
        cache: &str,
        list: &str,
        value: &[u8],
        keep: Option<u32>,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        self.with_entry(cache, list, |entry| {
            let mut items = match entry.get() {
                Some(Item::List(items)) => items.clone(),
                Some(Item::Value(_)) => return Err(BackendError::Invalid(format!("{list} is not a list"))),
                None => VecDeque::new(),
            };
            items.push_back(value.to_vec());
            let keep = keep.map_or(usize::MAX, |keep| keep as usize);
            while items.len() > keep {
                items.pop_front();
            }
            entry.put(Item::List(items), ttl);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_can_be_set_read_and_set_only_when_absent() {
        let backend = MemoryBackend::new();
        assert_eq!(backend.get("c", "k").await.unwrap(), None);
        backend.set("c", "k", b"v", None).await.unwrap();
        assert_eq!(backend.get("c", "k").await.unwrap(), Some(b"v".to_vec()));
        assert!(!backend.set_if_absent("c", "k", b"w", None).await.unwrap());
        assert!(backend.set_if_absent("c", "other", b"w", None).await.unwrap());
    }

    #[tokio::test]
    async fn an_expired_value_reads_as_a_miss() {
        let backend = MemoryBackend::new();
        backend.set("c", "k", b"v", Some(Duration::ZERO)).await.unwrap();
        assert_eq!(backend.get("c", "k").await.unwrap(), None);
        assert!(backend.set_if_absent("c", "k", b"w", None).await.unwrap());
    }

    #[tokio::test]
    async fn a_list_keeps_only_the_newest_items() {
        let backend = MemoryBackend::new();
        for n in 0..5u8 {
            backend.list_push_back("c", "l", &[n], Some(3), None).await.unwrap();
        }
        assert_eq!(backend.list("c", "l"), vec![vec![2], vec![3], vec![4]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_pushes_to_one_list_keep_every_item() {
        let backend = MemoryBackend::new();
        let pushes = (0..50u8).map(|n| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.list_push_back("c", "l", &[n], None, None).await })
        });
        for push in futures::future::join_all(pushes).await {
            push.unwrap().unwrap();
        }
        assert_eq!(backend.list("c", "l").len(), 50);
    }

    #[tokio::test]
    async fn items_written_without_a_ttl_get_the_default_one() {
        let backend = MemoryBackend::with_default_ttl(Duration::ZERO);
        backend.set("c", "k", b"v", None).await.unwrap();
        assert_eq!(backend.get("c", "k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn publishes_reach_bus_subscribers() {
        let backend = MemoryBackend::new();
        let mut receiver = backend.bus().subscribe_all();
        backend.publish("chat", "topic 2", "HELLO").await.unwrap();
        let published = receiver.try_recv().unwrap();
        assert_eq!((published.topic.as_str(), published.text.as_str()), ("topic 2", "HELLO"));
    }
}
