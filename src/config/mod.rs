//! Configuration: the typed settings users write, how they are loaded, and how they are
//! checked. Everything a user can set lives in [`Settings`]; the README's configuration
//! reference follows these structs.

pub mod duration;
mod expand;
mod load;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use load::{ConfigError, ConfigSource, LoadedConfig, load, load_from_str};
pub use secret::{REDACTED, Secret};

pub use crate::accept::replay::WhenFull;
pub use crate::http::ThreadScheduling;
use crate::processors::StepSettings;
pub use crate::processors::http::HttpStepSettings;
pub use crate::sources::subscription::SubscriptionSettings;
pub use crate::tokens::TokenSettings;

/// The signing secret used when the embedded backend runs without one configured. It is
/// public (it is in the README), so the relay refuses it with the Momento backend.
pub const DEMO_SECRET: &str = "topic-relay-demo-secret";

/// Every secret value the project publishes for trying it locally: the demo webhook secret,
/// and the fallbacks of `config/examples/identity-local.toml`. Anyone can read them, so the
/// Momento backend refuses each of them wherever a secret goes.
pub const PUBLISHED_DEMO_VALUES: [&str; 3] =
    [DEMO_SECRET, "local-demo-secret-for-trying-topic-relay", "local-demo-admin-token"];

/// Whether `value` is one of [`PUBLISHED_DEMO_VALUES`].
pub fn is_published_demo_value(value: &str) -> bool {
    PUBLISHED_DEMO_VALUES.contains(&value)
}

/// The whole configuration, after defaults, the config file and the environment are merged.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The HTTP server: listen address, limits, timeouts.
    #[serde(default)]
    pub server: ServerSettings,
    /// One entry per Momento webhook pointed at the relay, by name (`POST /webhooks/<name>`).
    #[serde(default)]
    pub webhooks: BTreeMap<String, WebhookSettings>,
    /// Topics the relay listens to itself, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subscriptions: BTreeMap<String, SubscriptionSettings>,
    /// Which backend to publish through, and how to reach Momento.
    #[serde(default)]
    pub momento: MomentoSettings,
    /// Routes, tried in order; the first whose `match` fits the event runs its steps.
    #[serde(default)]
    pub routes: Vec<RouteSettings>,
    /// What to do with a verified event that no route matches.
    #[serde(default)]
    pub unmatched: UnmatchedSettings,
    /// The durable spool, redelivery, dead letters and replay protection.
    #[serde(default)]
    pub delivery: DeliverySettings,
    /// The admin API (off unless a token is set).
    #[serde(default)]
    pub admin: AdminSettings,
    /// Token vending on `POST /v1/tokens` (off unless configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenSettings>,
    /// Where `http` steps may connect.
    #[serde(default)]
    pub http_steps: HttpStepSettings,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port to listen on. Port 0 picks a free port.
    pub listen: SocketAddr,
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
}

impl ServerSettings {
    /// The threads to serve HTTP on: `threads`, or one per CPU the relay may use (its
    /// container's CPU limit included).
    pub fn threads(&self) -> NonZeroUsize {
        self.threads
            .and_then(NonZeroUsize::new)
            .or_else(|| std::thread::available_parallelism().ok())
            .unwrap_or(NonZeroUsize::MIN)
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
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
        }
    }
}

/// `[webhooks.<name>]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Signing secrets; a request signed with any one of them is accepted, so a secret can be
    /// rotated without losing events. Entries that expand to nothing are dropped.
    pub secrets: Vec<Secret>,
    /// Events whose `publish_timestamp` is older than this are refused (Momento advises 60 s).
    #[serde(default = "default_max_age", with = "duration")]
    pub max_age: Duration,
    /// Events whose `publish_timestamp` is this far in the future are refused too.
    #[serde(default = "default_max_future_skew", with = "duration")]
    pub max_future_skew: Duration,
}

fn default_max_age() -> Duration {
    Duration::from_secs(60)
}

fn default_max_future_skew() -> Duration {
    Duration::from_secs(5)
}

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

impl Settings {
    /// The cache the Momento readiness probe reads: `momento.probe_cache`, else the first
    /// cache a route names exactly. Validation makes sure there is one on the Momento backend.
    pub fn probe_cache(&self) -> String {
        self.momento.probe_cache.clone().or_else(|| self.first_exact_route_cache()).unwrap_or_default()
    }

    fn first_exact_route_cache(&self) -> Option<String> {
        self.routes
            .iter()
            .filter_map(|route| route.matcher.cache.as_deref())
            .find(|cache| !cache.contains(['*', '?', '[', '{']))
            .map(str::to_owned)
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

/// `[[routes]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// Shown in logs, metrics and error messages.
    pub name: String,
    /// Which events this route takes.
    #[serde(rename = "match", default)]
    pub matcher: MatchSettings,
    /// Processing steps, run in order.
    #[serde(default)]
    pub steps: Vec<StepSettings>,
    /// Branches one event may fan out into (through `for_each` or a script that returns an
    /// array), so that no event explodes into millions.
    #[serde(default = "default_max_branches")]
    pub max_branches: usize,
    /// Allows a route to publish into a topic its own match receives. Without it,
    /// `check-config` and startup refuse such a route, since it would loop through Momento.
    #[serde(default)]
    pub allow_loop: bool,
    /// Allows a route that names no source to take a subscription's topic while webhooks are
    /// configured. Without it, `check-config` and startup refuse such a route, since an item
    /// published there would arrive twice, through both.
    #[serde(default)]
    pub allow_overlap: bool,
}

fn default_max_branches() -> usize {
    crate::pipeline::DEFAULT_MAX_BRANCHES
}

/// The `match` of a route. Omitted keys match everything.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSettings {
    /// Name of the webhook the event came in on (exact or glob); the route then takes no
    /// subscription items.
    pub webhook: Option<String>,
    /// Name of the subscription the item came from (exact or glob); the route then takes no
    /// webhook events.
    pub subscription: Option<String>,
    /// Cache name (exact or glob such as `chat-*`).
    pub cache: Option<String>,
    /// Topic name (exact or glob such as `room-*`).
    pub topic: Option<String>,
    /// `"required"` (any non-empty token id), `"absent"` (anonymous publishers only), or a
    /// glob over the token id.
    pub token_id: Option<String>,
}

/// `[unmatched]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnmatchedSettings {
    /// `ack` answers 200 (counted and logged); `reject` answers 404 `no_route`.
    #[serde(default)]
    pub action: UnmatchedAction,
}

/// What happens to a verified event that no route matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedAction {
    /// Answer 200 with outcome `unmatched`.
    #[default]
    Ack,
    /// Answer 404 with error `no_route`.
    Reject,
}

/// How events are kept safe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// Run each event's steps at once; write to the spool only what cannot finish within the
    /// time budget, then answer 202 and finish it in the background.
    #[default]
    Inline,
    /// Write every verified event to the spool before its steps run (write-ahead).
    Spool,
    /// No spool: an event that cannot finish in time is answered 503 and lost.
    Off,
}

impl DeliveryMode {
    /// The name as `delivery.mode` spells it, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Inline => "inline",
            DeliveryMode::Spool => "spool",
            DeliveryMode::Off => "off",
        }
    }
}

/// Where replay protection remembers the events it has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DedupMode {
    /// In this process's memory.
    #[default]
    Memory,
    /// In Momento Cache as well, so that replicas behind one load balancer share it.
    Momento,
}

/// A topic that dead letters are also published to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicAddress {
    /// The cache.
    pub cache: String,
    /// The topic.
    pub topic: String,
}

/// `[delivery]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// `inline`, `spool` (write-ahead) or `off`.
    pub mode: DeliveryMode,
    /// Directory of the spool's database file.
    pub spool_dir: PathBuf,
    /// With more than 1, relays sharing `spool_dir` (one network volume for several tasks)
    /// each take the first free `slot-<n>` under it, and a relay that replaces a dead one
    /// takes over its spool.
    pub spool_slots: u32,
    /// Time an event's steps may take inline before it is spooled instead. Default: three
    /// quarters of `server.request_timeout`.
    #[serde(with = "duration::optional", skip_serializing_if = "Option::is_none")]
    pub inline_budget: Option<Duration>,
    /// Events the spool holds at most; past it, new events that need the spool get 503.
    pub max_spooled_events: u64,
    /// Wait before the first background retry; it doubles with each attempt, with jitter.
    #[serde(with = "duration")]
    pub retry_initial: Duration,
    /// Longest wait between background retries.
    #[serde(with = "duration")]
    pub retry_max: Duration,
    /// Attempts after which an event becomes a dead letter.
    pub max_attempts: u32,
    /// Age after which an event that still fails becomes a dead letter.
    #[serde(with = "duration")]
    pub dead_letter_after: Duration,
    /// Also publish each dead letter here, as JSON.
    pub dead_letter_topic: Option<TopicAddress>,
    /// Spooled events retried at the same time.
    pub redelivery_concurrency: usize,
    /// `memory`, or `momento` to share the seen-set between replicas.
    pub dedup: DedupMode,
    /// Signatures remembered in memory at most; each is remembered until its event is stale.
    pub dedup_capacity: u64,
    /// What happens to a new event once `dedup_capacity` signatures are remembered.
    pub dedup_when_full: WhenFull,
    /// Cache holding the shared seen-set with `dedup = "momento"`. Default: the readiness
    /// probe's cache.
    pub dedup_cache: Option<String>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            mode: DeliveryMode::Inline,
            spool_dir: PathBuf::from("spool"),
            spool_slots: 1,
            inline_budget: None,
            max_spooled_events: 100_000,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_attempts: 50,
            dead_letter_after: Duration::from_secs(24 * 3600),
            dead_letter_topic: None,
            redelivery_concurrency: 16,
            dedup: DedupMode::Memory,
            // Three times Momento's top webhook rate (5,000/s) over the default window (65 s).
            dedup_capacity: 1_000_000,
            dedup_when_full: WhenFull::Accept,
            dedup_cache: None,
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

#[cfg(test)]
mod tests {
    use super::DeliveryMode;

    #[test]
    fn a_delivery_mode_is_logged_as_the_config_spells_it() {
        for mode in [DeliveryMode::Inline, DeliveryMode::Spool, DeliveryMode::Off] {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
    }
}
