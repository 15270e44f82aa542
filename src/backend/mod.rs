//! Stage 5, backend: where effects land. A trait with two implementations, Momento and the
//! embedded in-process backend; the pipeline only ever sees the trait.

mod bus;
mod memory;
pub mod momento;
mod settings;
mod timed;
mod topics;

use std::time::Duration;

use async_trait::async_trait;

pub use bus::{MAX_SUBSCRIBE_STREAMS, MemoryBus, Published, StreamSlot};
pub use memory::MemoryBackend;
pub use settings::{BackendKind, MomentoSettings};
pub use timed::Timed;
pub use topics::{ItemStream, ItemValue, Position, SetCondition, StreamEvent, TopicItem};

/// Why a backend call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Momento could not serve the call now (unavailable, throttled, connection lost).
    /// Retried; an event that still cannot finish is kept and retried later.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The call took longer than `momento.call_timeout`. Retried like `Unavailable`.
    #[error("backend call timed out")]
    Timeout,
    /// The API key is invalid or lacks permission. Not retried.
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// The cache does not exist. Not retried.
    #[error("not found: {0}")]
    NotFound(String),
    /// Momento refused the request as invalid, such as a topic name it does not allow, a
    /// value too large, or a key holding another type. Not retried.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl BackendError {
    /// Whether the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BackendError::Unavailable(_) | BackendError::Timeout)
    }
}

/// Where publishes and cache reads and writes go.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Whether the backend can serve calls: for `/readyz`.
    fn is_ready(&self) -> bool {
        true
    }

    /// Ends the backend's own background calls (readiness probes): the relay has stopped.
    fn close(&self) {}

    /// Registers backend-specific metrics, once, at startup.
    fn register_metrics(&self, _metrics: &mut crate::metrics::Metrics) {}

    /// Publishes `text` on `topic` in `cache`.
    async fn publish(&self, cache: &str, topic: &str, text: &str) -> Result<(), BackendError>;

    /// Reads `key`; `None` on a miss.
    async fn get(&self, cache: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError>;

    /// Writes `key`, with `ttl` or the backend's default.
    async fn set(
        &self,
        cache: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), BackendError>;

    /// Writes `key` only if it does not exist; true when it was written.
    async fn set_if_absent(
        &self,
        cache: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, BackendError>;

    /// Writes `key` when `condition` holds; true when it was written.
    async fn set_if(
        &self,
        cache: &str,
        key: &str,
        value: &[u8],
        condition: &SetCondition,
        ttl: Option<Duration>,
    ) -> Result<bool, BackendError>;

    /// Listens to `topic` in `cache`, from `resume` when given (and the topic still holds
    /// it), otherwise from the next item published.
    async fn subscribe(
        &self,
        cache: &str,
        topic: &str,
        resume: Option<Position>,
    ) -> Result<ItemStream, BackendError>;

    /// Appends `value` to the list `list`, keeping only the newest `keep` items when given,
    /// and sets the list's TTL.
    async fn list_push_back(
        &self,
        cache: &str,
        list: &str,
        value: &[u8],
        keep: Option<u32>,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError>;
}

/// The backend the configuration asks for, and the embedded bus when it is the embedded one.
pub struct Connected {
    /// The backend.
    pub backend: std::sync::Arc<dyn Backend>,
    /// The embedded backend's publish bus, for the subscribe endpoint.
    pub bus: Option<MemoryBus>,
}

/// Builds the configured backend; the Momento backend probes `probe_cache` for readiness.
pub async fn connect(settings: &MomentoSettings, probe_cache: &str) -> anyhow::Result<Connected> {
    match settings.resolved_backend() {
        BackendKind::Memory => {
            let backend = MemoryBackend::with_default_ttl(settings.default_ttl);
            tracing::info!(
                "using the embedded backend: publishes are served on /v1/subscribe/{{cache}}/{{topic}}"
            );
            Ok(Connected { bus: Some(backend.bus()), backend: std::sync::Arc::new(backend) })
        }
        BackendKind::Momento => {
            let backend = momento::MomentoBackend::connect(settings, probe_cache)?;
            tracing::info!(topic_clients = settings.topic_clients, "using the momento backend");
            Ok(Connected { backend, bus: None })
        }
    }
}
