//! `[server]` and `[admin]`: the HTTP server's address, limits and timeouts, and the admin API.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ThreadScheduling;
use crate::common::{Secret, duration};

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port to listen on. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// A second address, for operators: `/metrics`, `/v1/status` and `/v1/admin/*` move
    /// there from `listen` (which keeps webhooks, tokens, `/healthz` and `/readyz`), so that
    /// no load balancer in front of `listen` can expose them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops_listen: Option<SocketAddr>,
    /// Larger request bodies are refused with 413. Momento payloads are at most 4 KB.
    pub max_body_bytes: usize,
    /// Hard limit on one webhook request; it must stay under Momento's 5 s delivery timeout.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Webhook requests handled at once; past this the relay answers 503 with Retry-After.
    pub max_in_flight: usize,
    /// The longest a client may take from a request's first byte until the relay answers
    /// it; a client still sending its headers or body then is disconnected. Longer than
    /// `request_timeout`.
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    /// How long a connection with no request under way stays open; keep it longer than the
    /// load balancer's own idle timeout (60 s on AWS load balancers).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Connections open at once; past this a new one is answered 503 and closed.
    pub max_connections: usize,
    /// After SIGTERM, how long `/readyz` reports 503 while new events are still accepted,
    /// so that a load balancer stops sending before the listener closes.
    #[serde(with = "duration")]
    pub drain_delay: Duration,
    /// After the listener closes, how long in-flight requests may take to finish.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// Threads serving HTTP, each with the connections handed to it; one per CPU the relay
    /// may use when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// The Linux scheduling policy of the threads serving HTTP.
    pub scheduling: ThreadScheduling,
    /// Worker threads of the runtime that carries topic streams, the connections to Momento
    /// and redelivery; one per CPU the relay may use when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
    /// Lets the embedded backend use the public demo secrets (a webhook with no secret of
    /// its own, the demo JWT secret or admin token) while listening beyond loopback. Off,
    /// the relay refuses to start that way.
    pub allow_demo_secrets: bool,
}

impl ServerSettings {
    /// The threads to serve HTTP on: `threads`, or one per CPU the relay may use (its
    /// container's CPU limit included).
    pub fn threads(&self) -> NonZeroUsize {
        or_one_per_cpu(self.threads)
    }

    /// The worker threads to carry topic streams, Momento calls and redelivery on:
    /// `worker_threads`, or one per CPU the relay may use.
    pub fn worker_threads(&self) -> NonZeroUsize {
        or_one_per_cpu(self.worker_threads)
    }
}

/// `count`, or one per CPU the relay may use (its container's CPU limit included).
fn or_one_per_cpu(count: Option<usize>) -> NonZeroUsize {
    count
        .and_then(NonZeroUsize::new)
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN)
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ops_listen: None,
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(4),
            max_in_flight: 4096,
            read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(10),
            threads: None,
            scheduling: ThreadScheduling::default(),
            worker_threads: None,
            allow_demo_secrets: false,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer token for `/v1/admin/*`; without one the admin API is not served.
    pub token: Option<Secret>,
}
