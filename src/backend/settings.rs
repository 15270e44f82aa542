//! `[momento]`: which backend the relay runs on, and how it reaches Momento.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::common::{Secret, duration};

/// The backend the relay publishes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The embedded in-process backend: no account needed; publishes can be
    /// watched on `GET /v1/subscribe/{cache}/{topic}`.
    Memory,
    /// Momento itself, through the official `momento` crate.
    Momento,
}

/// `[momento]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MomentoSettings {
    /// `memory` or `momento`; when unset, `momento` if an API key is configured, else `memory`.
    pub backend: Option<BackendKind>,
    /// A Momento API key: a v2 key (with `endpoint`) or a legacy v1 key (which carries its own).
    pub api_key: Option<Secret>,
    /// The Momento endpoint for v2 keys, such as `cell-4-us-west-2-1.prod.a.momentohq.com`.
    pub endpoint: Option<String>,
    /// Send every call to this URL instead, such as `http://127.0.0.1:9090` for an emulator or
    /// a private endpoint.
    pub endpoint_override: Option<String>,
    /// Whether `endpoint_override` is reached over TLS.
    pub tls: bool,
    /// Size of the `TopicClient` pool that publishes are spread over, round-robin.
    pub topic_clients: usize,
    /// gRPC connections of the `CacheClient`.
    pub cache_connections: usize,
    /// Time allowed for one Momento call before it is abandoned and retried.
    #[serde(with = "duration")]
    pub call_timeout: Duration,
    /// Retries of a call that failed with a retryable error, within the request's budget.
    pub max_retries: u32,
    /// TTL of cache items written without one of their own.
    #[serde(with = "duration")]
    pub default_ttl: Duration,
    /// Cache used by the readiness probe (a `get` of a key that need not exist). When unset,
    /// the first cache named by a route.
    pub probe_cache: Option<String>,
}

impl Default for MomentoSettings {
    fn default() -> Self {
        Self {
            backend: None,
            api_key: None,
            endpoint: None,
            endpoint_override: None,
            tls: true,
            topic_clients: 4,
            cache_connections: 2,
            call_timeout: Duration::from_secs(1),
            max_retries: 3,
            default_ttl: Duration::from_secs(3600),
            probe_cache: None,
        }
    }
}

impl BackendKind {
    /// The name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::Momento => "momento",
        }
    }
}

impl MomentoSettings {
    /// The backend in effect: the configured one, else `momento` when an API key is set.
    pub fn resolved_backend(&self) -> BackendKind {
        match self.backend {
            Some(kind) => kind,
            None if self.api_key.as_ref().is_some_and(|key| !key.is_empty()) => BackendKind::Momento,
            None => BackendKind::Memory,
        }
    }
}
