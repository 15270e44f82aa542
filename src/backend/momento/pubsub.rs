//! Topic subscriptions over Momento's own gRPC stream, through the `PubsubClient` that
//! `momento-protos` generates, on the relay's own channels and credentials. The SDK's
//! `Subscription` drops heartbeats, hides discontinuities, resubscribes by itself without
//! backoff, and never gives back a stream's slot on its client. Here:
//!
//! - items, heartbeats and discontinuities all reach the relay, which sees a stalled stream
//!   (neither item nor heartbeat), counts gaps, and resubscribes with its own backoff;
//! - a broken stream ends after a [`StreamEvent::Broken`] saying why, and is never reopened
//!   here;
//! - each channel (one HTTP/2 connection) carries at most [`STREAMS_PER_CHANNEL`] streams,
//!   Momento's limit, counted exactly: a stream holds its slot until it is dropped, opened
//!   or not.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use momento_protos::cache_client::pubsub::pubsub_client::PubsubClient;
use momento_protos::cache_client::pubsub::subscription_item::Kind;
use momento_protos::cache_client::pubsub::{SubscriptionItem, SubscriptionRequest, topic_value};
use prometheus_client::metrics::gauge::Gauge;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::backend::{BackendError, ItemStream, ItemValue, Position, StreamEvent, TopicItem};

/// Streams one channel carries at most: Momento's limit per connection.
pub const STREAMS_PER_CHANNEL: usize = 100;

/// Where subscriptions go, and the channels they are carried on.
pub struct PubsubStreams {
    endpoint: Endpoint,
    authorization: AsciiMetadataValue,
    open_timeout: Duration,
    channels: Mutex<Vec<Carrier>>,
    /// Streams open on every channel, for `/metrics`.
    open: Gauge,
}

/// One channel, and the streams it carries now.
struct Carrier {
    channel: Channel,
    carried: Arc<AtomicUsize>,
}

/// One stream's place on its channel, given back when dropped.
struct Slot {
    carried: Arc<AtomicUsize>,
    open: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.carried.fetch_sub(1, Ordering::AcqRel);
        self.open.dec();
    }
}

/// Sends the API key, as every Momento call does.
#[derive(Clone)]
struct Authorize(AsciiMetadataValue);

impl Interceptor for Authorize {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

impl PubsubStreams {
    /// Subscriptions to `uri` (`https://cache.<endpoint>`, or an override), authorized by
    /// `api_key`; an open waits at most `open_timeout` for the service's answer.
    pub fn new(uri: &str, api_key: &str, open_timeout: Duration) -> anyhow::Result<Self> {
        let mut endpoint = Endpoint::from_shared(uri.to_owned())?
            .keep_alive_while_idle(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(1))
            .connect_timeout(open_timeout);
        if uri.starts_with("https://") {
            endpoint = endpoint.tls_config(ClientTlsConfig::new().with_webpki_roots())?;
        }
        let authorization = AsciiMetadataValue::try_from(api_key)
            .map_err(|_| anyhow::anyhow!("the API key is not a valid header value"))?;
        Ok(PubsubStreams {
            endpoint,
            authorization,
            open_timeout,
            channels: Mutex::new(Vec::new()),
            open: Gauge::default(),
        })
    }

    /// The gauge of streams open, to register in `/metrics`.
    pub fn open_gauge(&self) -> Gauge {
        self.open.clone()
    }

    /// Streams open now, on every channel.
    pub fn open_streams(&self) -> usize {
        self.lock().iter().map(|carrier| carrier.carried.load(Ordering::Acquire)).sum()
    }

    /// Channels made so far.
    pub fn channels(&self) -> usize {
        self.lock().len()
    }

    /// A channel with room, and the slot taken on it: the least loaded one, or a new one
    /// when every channel is full.
    fn carrier(&self) -> (Channel, Slot) {
        let mut channels = self.lock();
        let least = channels
            .iter()
            .filter(|carrier| carrier.carried.load(Ordering::Acquire) < STREAMS_PER_CHANNEL)
            .min_by_key(|carrier| carrier.carried.load(Ordering::Acquire));
        let carrier = match least {
            Some(carrier) => carrier,
            None => {
                channels.push(Carrier { channel: self.endpoint.connect_lazy(), carried: Arc::default() });
                channels.last().expect("just pushed")
            }
        };
        carrier.carried.fetch_add(1, Ordering::AcqRel);
        self.open.inc();
        (carrier.channel.clone(), Slot { carried: carrier.carried.clone(), open: self.open.clone() })
    }

    /// Subscribes to `topic` in `cache`, from `resume` when given: the first item wanted.
    pub async fn subscribe(
        &self,
        cache: &str,
        topic: &str,
        resume: Option<Position>,
    ) -> Result<ItemStream, BackendError> {
        let (channel, slot) = self.carrier();
        let mut client = PubsubClient::with_interceptor(channel, Authorize(self.authorization.clone()));
        let mut request = tonic::Request::new(SubscriptionRequest {
            cache_name: cache.to_owned(),
            topic: topic.to_owned(),
            resume_at_topic_sequence_number: resume.map_or(0, |at| at.sequence),
            sequence_page: resume.map_or(0, |at| at.page),
        });
        let cache_header = AsciiMetadataValue::try_from(cache)
            .map_err(|_| BackendError::Invalid(format!("the cache name {cache:?} cannot be sent")))?;
        request.metadata_mut().insert("cache", cache_header);
        let opened = tokio::time::timeout(self.open_timeout, client.subscribe(request))
            .await
            .map_err(|_| BackendError::Timeout)?
            .map_err(|status| classify_status(&status))?;
        let items = opened.into_inner();
        // The slot is held for as long as the stream lives, and given back with it.
        let events = futures::stream::unfold(Some((items, slot)), |state| async move {
            let (mut items, slot) = state?;
            loop {
                match items.next().await {
                    Some(Ok(item)) => {
                        if let Some(event) = event_of(item) {
                            return Some((event, Some((items, slot))));
                        }
                    }
                    Some(Err(status)) => return Some((StreamEvent::Broken(classify_status(&status)), None)),
                    None => {
                        let ended = BackendError::Unavailable("the service ended the stream".to_owned());
                        return Some((StreamEvent::Broken(ended), None));
                    }
                }
            }
        });
        Ok(events.boxed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Carrier>> {
        self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What one item of the wire stream is for the relay; `None` for an item without a kind.
fn event_of(item: SubscriptionItem) -> Option<StreamEvent> {
    Some(match item.kind? {
        Kind::Item(item) => StreamEvent::Item(TopicItem {
            position: Position { page: item.sequence_page, sequence: item.topic_sequence_number },
            publisher_id: item.publisher_id,
            value: match item.value.and_then(|value| value.kind) {
                Some(topic_value::Kind::Text(text)) => ItemValue::Text(text),
                Some(topic_value::Kind::Binary(bytes)) => ItemValue::Binary(bytes),
                None => ItemValue::Binary(Vec::new()),
            },
        }),
        Kind::Heartbeat(_) => StreamEvent::Heartbeat,
        Kind::Discontinuity(gap) => StreamEvent::Discontinuity {
            last: gap.last_topic_sequence,
            new: gap.new_topic_sequence,
            new_page: gap.new_sequence_page,
        },
    })
}

/// How a gRPC status from the stream is retried: as the SDK's errors are.
pub fn classify_status(status: &tonic::Status) -> BackendError {
    use tonic::Code;
    // A service's message could echo what it was sent; it is shown in /v1/status and logs.
    let message = format!("{:?}: {}", status.code(), crate::common::scrub(status.message()));
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => BackendError::Unauthorized(message),
        Code::NotFound => BackendError::NotFound(message),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange | Code::Unimplemented => {
            BackendError::Invalid(message)
        }
        Code::DeadlineExceeded => BackendError::Timeout,
        _ => BackendError::Unavailable(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_counted_per_channel_and_given_back_when_a_stream_is_dropped() {
        let streams = PubsubStreams::new("http://127.0.0.1:9", "key", Duration::from_millis(100)).unwrap();
        let held: Vec<_> = (0..STREAMS_PER_CHANNEL * 2 + 1).map(|_| streams.carrier()).collect();
        assert_eq!((streams.open_streams(), streams.channels()), (STREAMS_PER_CHANNEL * 2 + 1, 3));
        assert_eq!(streams.open_gauge().get(), (STREAMS_PER_CHANNEL * 2 + 1) as i64);
        drop(held);
        assert_eq!((streams.open_streams(), streams.open_gauge().get()), (0, 0));
        let again: Vec<_> = (0..STREAMS_PER_CHANNEL).map(|_| streams.carrier()).collect();
        assert_eq!(streams.channels(), 3, "freed slots are used before a new channel is made");
        drop(again);
    }

    #[tokio::test]
    async fn a_subscribe_that_cannot_connect_gives_its_slot_back() {
        let streams = PubsubStreams::new("http://127.0.0.1:9", "key", Duration::from_millis(200)).unwrap();
        for _ in 0..3 {
            assert!(streams.subscribe("chat", "room", None).await.is_err());
        }
        assert_eq!(streams.open_streams(), 0);
    }

    #[test]
    fn statuses_sort_into_retryable_and_permanent() {
        assert!(classify_status(&tonic::Status::unavailable("x")).is_retryable());
        assert!(!classify_status(&tonic::Status::permission_denied("x")).is_retryable());
        assert!(matches!(classify_status(&tonic::Status::not_found("x")), BackendError::NotFound(_)));
    }
}
