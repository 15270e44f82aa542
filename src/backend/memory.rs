//! The embedded backend: publishes go to an in-process bus (logged, and watchable through
//! `GET /v1/subscribe/{cache}/{topic}`); cache items live in a map in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{Backend, BackendError};
use crate::config::BackendKind;

/// How many publishes a slow subscriber may fall behind before it misses some.
const BUS_CAPACITY: usize = 1024;

/// One message published on the embedded bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Cache it was published in.
    pub cache: String,
    /// Topic it was published on.
    pub topic: String,
    /// The payload.
    pub text: String,
}

/// The embedded publish bus; clones share it.
#[derive(Clone)]
pub struct MemoryBus {
    sender: broadcast::Sender<Arc<Published>>,
}

impl MemoryBus {
    /// Receives everything published from now on; callers filter by cache and topic.
    pub fn subscribe_all(&self) -> broadcast::Receiver<Arc<Published>> {
        self.sender.subscribe()
    }
}

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
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(BUS_CAPACITY);
        MemoryBackend { bus: MemoryBus { sender }, store: Arc::default() }
    }

    /// The publish bus, for the subscribe endpoint.
    pub fn bus(&self) -> MemoryBus {
        self.bus.clone()
    }

    fn with_live_entry<T>(&self, cache: &str, key: &str, f: impl FnOnce(Option<&mut Stored>) -> T) -> T {
        let mut store = self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = (cache.to_owned(), key.to_owned());
        if store.get(&id).is_some_and(|stored| stored.expires.is_some_and(|at| at <= Instant::now())) {
            store.remove(&id);
        }
        f(store.get_mut(&id))
    }

    fn insert(&self, cache: &str, key: &str, item: Item, ttl: Option<Duration>) {
        let mut store = self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let expires = ttl.map(|ttl| Instant::now() + ttl);
        store.insert((cache.to_owned(), key.to_owned()), Stored { item, expires });
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Memory
    }

    async fn publish(&self, cache: &str, topic: &str, text: &str) -> Result<(), BackendError> {
        tracing::info!(cache, topic, text, "published on the embedded bus");
        // A send error only means nobody is subscribed right now, as with a real topic.
        let _ = self.bus.sender.send(Arc::new(Published {
            cache: cache.to_owned(),
            topic: topic.to_owned(),
            text: text.to_owned(),
        }));
        Ok(())
    }

    async fn get(&self, cache: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.with_live_entry(cache, key, |entry| match entry.map(|stored| &stored.item) {
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
        self.insert(cache, key, Item::Value(value.to_vec()), ttl);
        Ok(())
    }

    async fn set_if_absent(
        &self,
        cache: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, BackendError> {
        let mut store = self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = (cache.to_owned(), key.to_owned());
        let now = Instant::now();
        if store.get(&id).is_some_and(|stored| stored.expires.is_none_or(|at| at > now)) {
            return Ok(false);
        }
        let expires = ttl.map(|ttl| now + ttl);
        store.insert(id, Stored { item: Item::Value(value.to_vec()), expires });
        Ok(true)
    }

    async fn list_push_back(
        &self,
        cache: &str,
        list: &str,
        value: &[u8],
        keep: Option<u32>,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        let mut items =
            self.with_live_entry(cache, list, |entry| match entry.map(|stored| &mut stored.item) {
                Some(Item::List(items)) => Ok(std::mem::take(items)),
                Some(Item::Value(_)) => Err(BackendError::Invalid(format!("{list} is not a list"))),
                None => Ok(VecDeque::new()),
            })?;
        items.push_back(value.to_vec());
        let keep = keep.map_or(usize::MAX, |keep| keep as usize);
        while items.len() > keep {
            items.pop_front();
        }
        self.insert(cache, list, Item::List(items), ttl);
        Ok(())
    }
}

impl MemoryBackend {
    /// The items of a list, oldest first (empty when there is none).
    pub fn list(&self, cache: &str, list: &str) -> Vec<Vec<u8>> {
        self.with_live_entry(cache, list, |entry| match entry.map(|stored| &stored.item) {
            Some(Item::List(items)) => items.iter().cloned().collect(),
            _ => Vec::new(),
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

    #[tokio::test]
    async fn publishes_reach_bus_subscribers() {
        let backend = MemoryBackend::new();
        let mut receiver = backend.bus().subscribe_all();
        backend.publish("chat", "topic 2", "HELLO").await.unwrap();
        let published = receiver.try_recv().unwrap();
        assert_eq!((published.topic.as_str(), published.text.as_str()), ("topic 2", "HELLO"));
    }
}
