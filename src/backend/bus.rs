//! The embedded backend's publish bus: what `/v1/publish` and the relay's own `publish` steps
//! send, and what `/v1/subscribe` streams and the relay's subscriptions receive. Each topic
//! is numbered as Momento numbers it, and the bus bounds what it holds: the topics it numbers
//! (an idle topic is forgotten, and starts again on a new page, as Momento's do) and the
//! subscribe streams open at once.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::{ItemStream, ItemValue, Position, StreamEvent, TopicItem};

/// How many publishes a slow subscriber may fall behind before it misses some.
const BUS_CAPACITY: usize = 1024;

/// The most topics the bus numbers at once; past it, idle topics are forgotten.
pub const MAX_TOPICS: usize = 10_000;

/// A topic without a publish for this long may be forgotten when room is needed.
const TOPIC_IDLE: Duration = Duration::from_secs(60);

/// How often the bus tells a subscription it is alive when nothing is published, as
/// Momento's heartbeats do.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// The most `/v1/subscribe` streams open at once.
pub const MAX_SUBSCRIBE_STREAMS: usize = 256;

/// One message published on the embedded bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Cache it was published in.
    pub cache: String,
    /// Topic it was published on.
    pub topic: String,
    /// The payload.
    pub text: String,
    /// Its place on its topic: numbered from 1, on the topic's current page.
    pub position: Position,
    /// The publisher's `token_id`; empty for the relay's own publishes.
    pub publisher_id: String,
    /// When it was published, in ms since the epoch.
    pub published_ms: u64,
}

/// The embedded publish bus; clones share it.
#[derive(Clone)]
pub struct MemoryBus {
    sender: broadcast::Sender<Arc<Published>>,
    /// Open [`Listener`]s. Every publish asks whether anyone listens, and the sender's own
    /// count takes a lock that each HTTP thread would take from the others.
    listeners: Arc<AtomicUsize>,
    /// Where each (cache, topic) is in its numbering.
    topics: Arc<Mutex<Topics>>,
    /// Open `/v1/subscribe` streams.
    streams: Arc<AtomicUsize>,
}

/// The numbering of every topic the bus knows.
struct Topics {
    numbered: HashMap<(String, String), Numbering>,
    /// The page a topic starts on: the bus keeps nothing across restarts, so each start
    /// numbers its topics afresh, on a new page; and a forgotten topic starts on a new one too.
    next_page: u64,
    capacity: usize,
}

/// One topic's numbering.
struct Numbering {
    page: u64,
    last: u64,
    used: Instant,
}

impl Topics {
    /// The next position on `cache`/`topic`.
    fn next(&mut self, cache: &str, topic: &str) -> Position {
        let key = (cache.to_owned(), topic.to_owned());
        if !self.numbered.contains_key(&key) && self.numbered.len() >= self.capacity {
            self.make_room();
        }
        let page = self.next_page;
        let numbering = self.numbered.entry(key).or_insert(Numbering { page, last: 0, used: Instant::now() });
        numbering.last += 1;
        numbering.used = Instant::now();
        Position { page: numbering.page, sequence: numbering.last }
    }

    /// Forgets every idle topic, or the least recently used one if none is idle. Topics
    /// numbered from here on start on a page no forgotten topic had.
    fn make_room(&mut self) {
        let before = self.numbered.len();
        self.numbered.retain(|_, numbering| numbering.used.elapsed() < TOPIC_IDLE);
        if self.numbered.len() == before {
            let oldest =
                self.numbered.iter().min_by_key(|(_, numbering)| numbering.used).map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.numbered.remove(&oldest);
            }
        }
        self.next_page += 1;
    }
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::with_topic_capacity(MAX_TOPICS)
    }

    /// An empty bus that numbers at most `capacity` topics at once.
    pub fn with_topic_capacity(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(BUS_CAPACITY);
        let topics = Topics {
            numbered: HashMap::new(),
            next_page: crate::common::now_ms(),
            capacity: capacity.max(1),
        };
        MemoryBus {
            sender,
            listeners: Arc::default(),
            topics: Arc::new(Mutex::new(topics)),
            streams: Arc::default(),
        }
    }

    /// Receives everything published from now on; callers filter by cache and topic.
    pub fn subscribe_all(&self) -> Listener {
        self.listeners.fetch_add(1, Ordering::AcqRel);
        Listener { receiver: self.sender.subscribe(), _counted: Counted(self.listeners.clone()) }
    }

    /// A place for one more `/v1/subscribe` stream, held until dropped; `None` when
    /// [`MAX_SUBSCRIBE_STREAMS`] are open.
    pub fn open_stream(&self) -> Option<StreamSlot> {
        let taken = self.streams.fetch_add(1, Ordering::AcqRel);
        let slot = StreamSlot { _counted: Counted(self.streams.clone()) };
        (taken < MAX_SUBSCRIBE_STREAMS).then_some(slot)
    }

    /// The items published on `topic` in `cache` from now on, with a heartbeat every
    /// `HEARTBEAT_EVERY`. The bus keeps no history, so there is nothing to resume; a
    /// subscriber that falls more than the bus's capacity behind misses items, which shows as
    /// a jump in their sequence numbers.
    pub fn items(&self, cache: &str, topic: &str) -> ItemStream {
        let (cache, topic) = (cache.to_owned(), topic.to_owned());
        let items = self.subscribe_all().into_stream().filter_map(move |published| {
            let item = match published {
                Ok(published) if published.cache == cache && published.topic == topic => {
                    Some(StreamEvent::Item(TopicItem {
                        position: published.position,
                        publisher_id: published.publisher_id.clone(),
                        value: ItemValue::Text(published.text.clone()),
                    }))
                }
                _ => None,
            };
            std::future::ready(item)
        });
        let heartbeats = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(HEARTBEAT_EVERY))
            .map(|_| StreamEvent::Heartbeat);
        futures::stream::select(items, heartbeats).boxed()
    }

    /// Publishes `text` as `publisher_id`; returns its sequence number on the topic, or 0 when
    /// nobody listens (the message then goes nowhere, as on a real topic, and is not built).
    pub fn publish(&self, cache: &str, topic: &str, text: &str, publisher_id: &str) -> u64 {
        if self.listeners.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let mut topics = self.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let position = topics.next(cache, topic);
        // Sent under the lock, so that the bus carries each topic's items in sequence order.
        let _ = self.sender.send(Arc::new(Published {
            cache: cache.to_owned(),
            topic: topic.to_owned(),
            text: text.to_owned(),
            position,
            publisher_id: publisher_id.to_owned(),
            published_ms: crate::common::now_ms(),
        }));
        position.sequence
    }

    /// How many topics the bus numbers now.
    pub fn topics_numbered(&self) -> usize {
        self.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).numbered.len()
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything published on the bus from the moment it was made; counted as a listener until
/// dropped.
pub struct Listener {
    receiver: broadcast::Receiver<Arc<Published>>,
    _counted: Counted,
}

impl Listener {
    /// The next item already published, without waiting.
    pub fn try_recv(&mut self) -> Result<Arc<Published>, broadcast::error::TryRecvError> {
        self.receiver.try_recv()
    }

    /// The items as a stream; a listener that falls behind gets a `Lagged` error with the count
    /// it missed.
    pub fn into_stream(self) -> ListenerStream {
        ListenerStream { items: BroadcastStream::new(self.receiver), _counted: self._counted }
    }
}

/// A [`Listener`] as a stream.
pub struct ListenerStream {
    items: BroadcastStream<Arc<Published>>,
    _counted: Counted,
}

impl Stream for ListenerStream {
    type Item = Result<Arc<Published>, BroadcastStreamRecvError>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.items.poll_next_unpin(context)
    }
}

/// One open `/v1/subscribe` stream, counted until dropped.
pub struct StreamSlot {
    _counted: Counted,
}

/// One in a count, until dropped.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_publish_with_no_listener_left_goes_nowhere_and_is_not_numbered() {
        let bus = MemoryBus::new();
        let listener = bus.subscribe_all();
        assert_eq!(bus.publish("chat", "t", "one", ""), 1);
        drop(listener);
        assert_eq!(bus.publish("chat", "t", "two", ""), 0);
        let mut listener = bus.subscribe_all().into_stream();
        assert_eq!(bus.publish("chat", "t", "three", ""), 2);
        assert_eq!(listener.next().await.unwrap().unwrap().text, "three");
    }

    #[test]
    fn the_topics_numbered_stay_bounded_and_a_forgotten_topic_starts_on_a_new_page() {
        let bus = MemoryBus::with_topic_capacity(3);
        let mut listener = bus.subscribe_all();
        bus.publish("chat", "first", "a", "");
        let first_page = listener.try_recv().unwrap().position.page;
        for n in 0..50 {
            bus.publish("chat", &format!("topic-{n}"), "x", "");
        }
        assert_eq!(bus.topics_numbered(), 3);
        while listener.try_recv().is_ok() {}
        assert_eq!(bus.publish("chat", "first", "b", ""), 1, "numbered afresh");
        let again = listener.try_recv().unwrap().position;
        assert_ne!(again.page, first_page, "on a new page, so that resuming subscribers see a reset");
    }

    #[test]
    fn subscribe_streams_are_bounded_and_a_closed_one_gives_its_place_back() {
        let bus = MemoryBus::new();
        let open: Vec<StreamSlot> = (0..MAX_SUBSCRIBE_STREAMS).map(|_| bus.open_stream().unwrap()).collect();
        assert!(bus.open_stream().is_none());
        drop(open);
        assert!(bus.open_stream().is_some());
    }
}
