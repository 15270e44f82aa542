//! Configuration: the typed settings users write, how they are loaded, and how they are
//! checked. Everything a user can set lives in [`Settings`]; the configuration
//! reference (`docs/src/reference/configuration.md`) follows these structs.

pub use crate::common::duration;
mod expand;
mod load;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::common::{REDACTED, Secret};
pub use load::{ConfigError, ConfigSource, LoadedConfig, load, load_from_str, load_source};

pub use crate::accept::replay::WhenFull;
pub use crate::backend::{BackendKind, MomentoSettings};
pub use crate::delivery::{DedupMode, DeliveryMode, DeliverySettings, TopicAddress};
pub use crate::http::{AdminSettings, ServerSettings, ThreadScheduling};
pub use crate::processors::http::HttpStepSettings;
pub use crate::route::{MatchSettings, RouteSettings, UnmatchedAction, UnmatchedSettings};
pub use crate::sources::subscription::SubscriptionSettings;
pub use crate::sources::webhook::WebhookSettings;
pub use crate::tokens::TokenSettings;

/// The signing secret used when the embedded backend runs without one configured. It is
/// public (it is in the documentation), so the relay refuses it with the Momento backend.
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

impl crate::route::RouteInputs for Settings {
    fn routes(&self) -> &[RouteSettings] {
        &self.routes
    }

    fn http_steps(&self) -> &HttpStepSettings {
        &self.http_steps
    }

    fn webhook_names(&self) -> Vec<&str> {
        self.webhooks.keys().map(String::as_str).collect()
    }

    fn subscribed_topics(&self) -> Vec<(&str, &str, &[String])> {
        let subscriptions = self.subscriptions.iter();
        subscriptions
            .map(|(name, listened)| (name.as_str(), listened.cache.as_str(), &listened.topics[..]))
            .collect()
    }

    fn dead_letter_topic(&self) -> Option<(&str, &str)> {
        let topic = self.delivery.dead_letter_topic.as_ref()?;
        Some((topic.cache.as_str(), topic.topic.as_str()))
    }
}

impl Settings {
    /// The cache the Momento readiness probe reads: `momento.probe_cache`, else the first
    /// cache a route names exactly, else the first subscription's cache. Validation makes sure
    /// there is one on the Momento backend.
    pub fn probe_cache(&self) -> String {
        self.momento
            .probe_cache
            .clone()
            .or_else(|| self.first_exact_route_cache())
            .or_else(|| self.subscriptions.values().next().map(|subscription| subscription.cache.clone()))
            .unwrap_or_default()
    }

    fn first_exact_route_cache(&self) -> Option<String> {
        self.routes
            .iter()
            .filter_map(|route| route.matcher.cache.as_deref())
            .find(|cache| !cache.contains(['*', '?', '[', '{']))
            .map(str::to_owned)
    }
}
