//! The Momento backend: publishes through a pool of `TopicClient`s, reads and writes through
//! a `CacheClient`, all with the official `momento` crate; listens to topics over Momento's
//! own gRPC stream (`pubsub`), which the SDK's subscriptions do not let the relay see into.

mod calls;
mod credentials;
mod pubsub;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use momento::cache::{
    CollectionTtl, GetResponse, ListConcatenateBackRequest, SetIfAbsentOrEqualRequest,
    SetIfAbsentOrEqualResponse, SetIfAbsentRequest, SetIfAbsentResponse, SetIfEqualRequest,
    SetIfEqualResponse, SetRequest,
};
use momento::config::grpc_configuration::GrpcConfiguration;
use momento::config::transport_strategy::TransportStrategy;
use momento::{CacheClient, TopicClient};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio_util::sync::CancellationToken;

pub use calls::classify;
use calls::{CallPolicy, Readiness, call};
pub use credentials::{CredentialError, credential_provider, pubsub_uri};

pub use pubsub::{PubsubStreams, STREAMS_PER_CHANNEL};

use super::{Backend, BackendError, ItemStream, Position, SetCondition};
use super::{BackendKind, MomentoSettings};
use crate::metrics::Metrics;

/// Publishes by client of the pool, labelled with the client's position.
type PublishesByClient = Family<[(&'static str, String); 1], Counter>;

/// Key the readiness probe reads; it need not exist (a miss is a success).
const PROBE_KEY: &str = "topic-relay:readiness-probe";
/// How often the probe runs while the backend is not ready.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Momento, through a round-robin pool of `TopicClient`s and one `CacheClient`.
pub struct MomentoBackend {
    topic_clients: Vec<TopicClient>,
    next_topic_client: AtomicUsize,
    publishes: PublishesByClient,
    publishes_per_client: Vec<Counter>,
    cache: CacheClient,
    streams: PubsubStreams,
    policy: CallPolicy,
    readiness: Readiness,
    /// Cancelled when the relay stops, so that no probe reaches Momento after it.
    closed: CancellationToken,
}

impl MomentoBackend {
    /// Builds the clients (connections open lazily) and starts probing `probe_cache` until a
    /// call succeeds.
    pub fn connect(settings: &MomentoSettings, probe_cache: &str) -> anyhow::Result<Arc<Self>> {
        let credentials = credential_provider(settings)?;
        // The SDK's server-environment keep-alive defaults, with our own call timeout.
        let grpc = || {
            TransportStrategy::builder().grpc_configuration(
                GrpcConfiguration::builder()
                    .deadline(settings.call_timeout)
                    .keep_alive_while_idle(true)
                    .keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(1)),
            )
        };
        let topic_client = {
            let credentials = credentials.clone();
            let configuration = momento::topics::Configuration::builder().transport_strategy(grpc()).build();
            move || {
                TopicClient::builder()
                    .configuration(configuration.clone())
                    .credential_provider(credentials.clone())
                    .build()
            }
        };
        let topic_clients = (0..settings.topic_clients)
            .map(|_| topic_client())
            .collect::<Result<Vec<_>, _>>()
            .context("cannot build the Momento topic clients")?;
        let streams = PubsubStreams::new(
            &pubsub_uri(settings, &credentials),
            credentials.auth_token(),
            settings.call_timeout,
        )
        .context("cannot set up the Momento topic subscriptions")?;
        let cache = CacheClient::builder()
            .default_ttl(settings.default_ttl)
            .configuration(momento::cache::Configuration::builder().transport_strategy(grpc()))
            .credential_provider(credentials)
            .with_num_connections(settings.cache_connections)
            .build()
            .context("cannot build the Momento cache client")?;
        let publishes = PublishesByClient::default();
        let publishes_per_client = (0..topic_clients.len())
            .map(|client| publishes.get_or_create(&[("client", client.to_string())]).clone())
            .collect();
        let backend = Arc::new(MomentoBackend {
            publishes,
            publishes_per_client,
            topic_clients,
            next_topic_client: AtomicUsize::new(0),
            cache,
            streams,
            policy: CallPolicy { timeout: settings.call_timeout, max_retries: settings.max_retries },
            readiness: Readiness::default(),
            closed: CancellationToken::new(),
        });
        tokio::spawn(probe_until_closed(
            Arc::downgrade(&backend),
            backend.closed.clone(),
            probe_cache.to_owned(),
        ));
        Ok(backend)
    }

    /// Topic subscription streams open now.
    pub fn open_streams(&self) -> usize {
        self.streams.open_streams()
    }

    /// Channels made so far to carry subscription streams.
    pub fn stream_channels(&self) -> usize {
        self.streams.channels()
    }

    /// Publishes made by each client of the pool, in pool order.
    pub fn publishes_per_client(&self) -> Vec<u64> {
        self.publishes_per_client.iter().map(Counter::get).collect()
    }

    async fn probe(&self, cache: &str) -> Result<(), BackendError> {
        self.get(cache, PROBE_KEY).await.map(drop)
    }
}

/// While Momento is not ready, probes it every [`PROBE_INTERVAL`], until the relay stops.
async fn probe_until_closed(backend: Weak<MomentoBackend>, closed: CancellationToken, cache: String) {
    let mut interval = tokio::time::interval(PROBE_INTERVAL);
    loop {
        tokio::select! {
            () = closed.cancelled() => return,
            _ = interval.tick() => {}
        }
        let Some(backend) = backend.upgrade() else { return };
        if backend.readiness.is_ready() {
            continue;
        }
        let probed = tokio::select! {
            () = closed.cancelled() => return,
            probed = backend.probe(&cache) => probed,
        };
        if let Err(error) = probed {
            tracing::warn!(cache, %error, "momento readiness probe failed");
        }
    }
}

#[async_trait]
impl Backend for MomentoBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Momento
    }

    fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    fn close(&self) {
        self.closed.cancel();
    }

    fn register_metrics(&self, metrics: &mut Metrics) {
        metrics.register(
            "topic_relay_momento_publishes",
            "Publishes by each TopicClient of the pool",
            self.publishes.clone(),
        );
        metrics.register(
            "topic_relay_subscription_streams_open",
            "Topic subscription streams open on the relay's channels to Momento (at most 100 per channel)",
            self.streams.open_gauge(),
        );
    }

    async fn publish(&self, cache: &str, topic: &str, text: &str) -> Result<(), BackendError> {
        let slot = self.next_topic_client.fetch_add(1, Ordering::Relaxed) % self.topic_clients.len();
        let client = &self.topic_clients[slot];
        call(self.policy, &self.readiness, "publish", || client.publish(cache, topic, text.to_owned()))
            .await?;
        self.publishes_per_client[slot].inc();
        Ok(())
    }

    async fn get(&self, cache: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let response = call(self.policy, &self.readiness, "get", || self.cache.get(cache, key)).await?;
        Ok(match response {
            GetResponse::Hit { value } => Some(value.into()),
            GetResponse::Miss => None,
        })
    }

    async fn set(
        &self,
        cache: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        call(self.policy, &self.readiness, "set", || {
            self.cache.send_request(SetRequest::new(cache, key, value.to_vec()).ttl(ttl))
        })
        .await
        .map(drop)
    }

    async fn set_if_absent(
        &self,
        cache: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, BackendError> {
        // Never retried: an attempt whose answer was lost may have stored the key, and a retry
        // would then report it present, mistaking the relay's own write for someone else's.
        let once = CallPolicy { max_retries: 0, ..self.policy };
        let response = call(once, &self.readiness, "set_if_absent", || {
            self.cache.send_request(SetIfAbsentRequest::new(cache, key, value.to_vec()).ttl(ttl))
        })
        .await?;
        Ok(matches!(response, SetIfAbsentResponse::Stored))
    }

    async fn set_if(
        &self,
        cache: &str,
        key: &str,
        value: &[u8],
        condition: &SetCondition,
        ttl: Option<Duration>,
    ) -> Result<bool, BackendError> {
        // Retried only where a retry cannot mistake the relay's own write for another's.
        let (policy, value) = (self.policy, value.to_vec());
        match condition {
            SetCondition::Absent => self.set_if_absent(cache, key, &value, ttl).await,
            SetCondition::Equal(equal) => {
                let response = call(policy, &self.readiness, "set_if_equal", || {
                    let request = SetIfEqualRequest::new(cache, key, value.clone(), equal.clone());
                    self.cache.send_request(request.ttl(ttl))
                })
                .await?;
                Ok(matches!(response, SetIfEqualResponse::Stored))
            }
            SetCondition::AbsentOrEqual(equal) => {
                let response = call(policy, &self.readiness, "set_if_absent_or_equal", || {
                    let request = SetIfAbsentOrEqualRequest::new(cache, key, value.clone(), equal.clone());
                    self.cache.send_request(request.ttl(ttl))
                })
                .await?;
                Ok(matches!(response, SetIfAbsentOrEqualResponse::Stored))
            }
        }
    }

    async fn subscribe(
        &self,
        cache: &str,
        topic: &str,
        resume: Option<Position>,
    ) -> Result<ItemStream, BackendError> {
        self.streams.subscribe(cache, topic, resume).await
    }

    async fn list_push_back(
        &self,
        cache: &str,
        list: &str,
        value: &[u8],
        keep: Option<u32>,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        call(self.policy, &self.readiness, "list_push_back", || {
            let request = ListConcatenateBackRequest::new(cache, list, vec![value.to_vec()])
                .ttl(CollectionTtl::refresh_on_update(ttl))
                .truncate_front_to_size(keep);
            self.cache.send_request(request)
        })
        .await
        .map(drop)
    }
}
