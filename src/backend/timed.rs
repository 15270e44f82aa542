//! A backend that times every call of the one it wraps, by operation, for
//! `topic_relay_backend_call_duration_seconds`. Both backends are timed the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::BackendKind;
use super::{Backend, BackendError, ItemStream, Position, SetCondition};
use crate::metrics::{Histogram, Metrics};

/// Times each call to `inner`, retries included.
pub struct Timed {
    inner: Arc<dyn Backend>,
    publish: Histogram,
    get: Histogram,
    set: Histogram,
    set_if_absent: Histogram,
    set_if: Histogram,
    subscribe: Histogram,
    list_push_back: Histogram,
}

impl Timed {
    /// Wraps `inner`, with one histogram per operation from `metrics`.
    pub fn new(inner: Arc<dyn Backend>, metrics: &Metrics) -> Self {
        Timed {
            inner,
            publish: metrics.backend_duration("publish"),
            get: metrics.backend_duration("get"),
            set: metrics.backend_duration("set"),
            set_if_absent: metrics.backend_duration("set_if_absent"),
            set_if: metrics.backend_duration("set_if"),
            subscribe: metrics.backend_duration("subscribe"),
            list_push_back: metrics.backend_duration("list_push_back"),
        }
    }
}

/// Runs `call` and records how long it took, whatever its outcome.
async fn timed<T>(histogram: &Histogram, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let result = call.await;
    histogram.observe_duration(started.elapsed());
    result
}

#[async_trait]
impl Backend for Timed {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    fn close(&self) {
        self.inner.close();
    }

    fn register_metrics(&self, metrics: &mut Metrics) {
        self.inner.register_metrics(metrics);
    }

    async fn publish(&self, cache: &str, topic: &str, text: &str) -> Result<(), BackendError> {
        timed(&self.publish, self.inner.publish(cache, topic, text)).await
    }

    async fn get(&self, cache: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        timed(&self.get, self.inner.get(cache, key)).await
    }

    async fn set(
        &self,
        cache: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        timed(&self.set, self.inner.set(cache, key, value, ttl)).await
    }

    async fn set_if_absent(
        &self,
        cache: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, BackendError> {
        timed(&self.set_if_absent, self.inner.set_if_absent(cache, key, value, ttl)).await
    }

    async fn set_if(
        &self,
        cache: &str,
        key: &str,
        value: &[u8],
        condition: &SetCondition,
        ttl: Option<Duration>,
    ) -> Result<bool, BackendError> {
        timed(&self.set_if, self.inner.set_if(cache, key, value, condition, ttl)).await
    }

    /// Times establishing the subscription, not the items that follow.
    async fn subscribe(
        &self,
        cache: &str,
        topic: &str,
        resume: Option<Position>,
    ) -> Result<ItemStream, BackendError> {
        timed(&self.subscribe, self.inner.subscribe(cache, topic, resume)).await
    }

    async fn list_push_back(
        &self,
        cache: &str,
        list: &str,
        value: &[u8],
        keep: Option<u32>,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        timed(&self.list_push_back, self.inner.list_push_back(cache, list, value, keep, ttl)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    #[tokio::test]
    async fn each_call_is_timed_under_its_operation() {
        let metrics = Metrics::new(&[], &[]);
        let backend = Timed::new(Arc::new(MemoryBackend::new()), &metrics);
        backend.publish("chat", "t", "x").await.unwrap();
        backend.publish("chat", "t", "y").await.unwrap();
        backend.get("chat", "k").await.unwrap();
        assert_eq!(metrics.backend_duration("publish").count(), 2);
        assert_eq!(metrics.backend_duration("get").count(), 1);
        assert_eq!(metrics.backend_duration("set").count(), 0);
    }
}
