//! Reloading the configuration while the relay runs, on SIGHUP or `POST /v1/admin/reload`.
//!
//! The file the relay started with is read and checked again, as `check-config` checks it.
//! What can change live is then swapped in whole: webhooks and their secrets, routes and
//! steps, token vending, and subscriptions (see `sources::subscription::listening`). An
//! event already taken finishes under the configuration it started with: a webhook request
//! keeps the stack it entered, a subscription item the relay it was taken under.
//!
//! A file that is invalid, or that changes what the relay set up once at startup (its
//! listeners, its backend, its spool, the admin token, whether tokens are vended at all),
//! is refused whole, naming each such key; the configuration in force stays.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::signals::Hangups;
use crate::accept::replay::ReplayGuard;
use crate::common::{Secret, now_ms};
use crate::config::{self, ConfigSource, LoadedConfig, Settings};
use crate::delivery::Delivery;
use crate::http::{
    AppState, ConfigVersion, LiveConfigVersion, RefusedReload, ReloadAnswer, ReloadInbox, ReloadReport,
    Shared,
};
use crate::metrics::Metrics;
use crate::processors::ProcessorRegistry;
use crate::relay::{LiveRelay, Relay};
use crate::route::{LiveRoutes, RouteTable};
use crate::sources::subscription::Listening;
use crate::sources::webhook::Webhooks;
use crate::tokens::{Issuer, TokenMetrics, TokenVendor};

/// What a reload rebuilds from, and what it swaps.
pub struct Reloader {
    /// Where the configuration in force came from; `None` when the relay was built from
    /// settings in code, which cannot be read again.
    pub source: Option<ConfigSource>,
    /// The configuration in force.
    pub settings: Settings,
    /// The step kinds routes are built from.
    pub registry: ProcessorRegistry,
    /// The relay's counters.
    pub metrics: Arc<Metrics>,
    /// Delivery, shared by every configuration.
    pub delivery: Arc<Delivery>,
    /// The replay check, shared by every configuration's webhooks.
    pub replays: Arc<ReplayGuard>,
    /// How tokens are issued and counted, when `[tokens]` is configured.
    pub token_issuer: Option<(Issuer, TokenMetrics)>,
    /// The relay in force, for subscriptions.
    pub relay: LiveRelay,
    /// The routes in force, for redelivery.
    pub routes: LiveRoutes,
    /// The HTTP state in force.
    pub state: AppState,
    /// The configuration in force, as `/v1/status` shows it.
    pub version: LiveConfigVersion,
    /// How long a topic that a reload removes has to finish what it holds.
    pub grace: Duration,
}

impl Reloader {
    /// Reloads at each SIGHUP and each request in `inbox`, one at a time, until `stop`; then
    /// gives the subscriptions back for shutdown.
    pub async fn serve(
        mut self,
        mut listening: Listening,
        mut hangups: Hangups,
        mut inbox: ReloadInbox,
        stop: CancellationToken,
    ) -> Listening {
        loop {
            let answer_to: Option<oneshot::Sender<ReloadAnswer>> = tokio::select! {
                () = stop.cancelled() => return listening,
                () = hangups.received() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    None
                }
                Some(request) = inbox.recv() => Some(request),
            };
            let answer = self.reload(&mut listening).await;
            if let Some(answer_to) = answer_to {
                let _ = answer_to.send(answer);
            }
        }
    }

    /// Reads the configuration again and applies it, or refuses it whole; counts and logs
    /// either.
    async fn reload(&mut self, listening: &mut Listening) -> ReloadAnswer {
        match self.try_reload(listening).await {
            Ok(report) => {
                self.metrics.config_reloads.increment("applied");
                tracing::info!(
                    sha256 = report.config.sha256,
                    topics_started = report.topics_started.len(),
                    topics_stopped = report.topics_stopped.len(),
                    "configuration reloaded"
                );
                Ok(report)
            }
            Err(error) => {
                // Configuration errors hide the values they were given; this is for a
                // secret written in the file at a key that is not a secret's.
                let error = crate::common::scrub(&error);
                self.metrics.config_reloads.increment("refused");
                tracing::error!("configuration not reloaded; the one in force stays: {error}");
                let mut version = ConfigVersion::clone(&self.version.load());
                version.last_refused = Some(RefusedReload { at_ms: now_ms(), error: error.clone() });
                self.version.store(Arc::new(version));
                Err(error)
            }
        }
    }

    async fn try_reload(&mut self, listening: &mut Listening) -> Result<ReloadReport, String> {
        let Some(source) = self.source.clone() else {
            return Err("the relay was built from settings in code, with no file to read again".into());
        };
        let loaded = config::load_source(source).map_err(|error| error.to_string())?;
        let origin = loaded.source.to_string();
        let fixed = unchangeable_keys(&self.settings, &loaded.settings);
        if !fixed.is_empty() {
            return Err(format!(
                "{origin}: {} cannot change while the relay runs; restart it to apply {}",
                fixed.join(", "),
                if fixed.len() == 1 { "this change" } else { "these changes" }
            ));
        }
        let next = self.build(&loaded).await.map_err(|message| format!("{origin}: {message}"))?;
        for notice in &loaded.notices {
            tracing::warn!("{notice}");
        }
        // From here nothing fails: swap everything in.
        self.routes.store(next.relay.routes().clone());
        self.relay.store(next.relay.clone());
        let state = AppState::new(Shared {
            relay: next.relay,
            webhooks: next.webhooks,
            tokens: next.tokens,
            token_cors_origins: next.token_cors_origins,
            ..Shared::clone(&self.state)
        });
        self.state.doors.open_onto(&state);
        self.state = state;
        let deadline = Instant::now() + self.grace;
        let changes = listening.reconfigure(&loaded.settings.subscriptions, deadline).await;
        let reloads = self.version.load().reloads + 1;
        let version = ConfigVersion { reloads, ..version_of(&loaded) };
        self.version.store(Arc::new(version.clone()));
        self.settings = loaded.settings;
        Ok(ReloadReport { config: version, topics_started: changes.started, topics_stopped: changes.stopped })
    }

    /// Builds the parts of `loaded` that change live, without applying any.
    async fn build(&self, loaded: &LoadedConfig) -> Result<NextParts, String> {
        let settings = &loaded.settings;
        let mut routes = RouteTable::build(settings, &self.registry)
            .map_err(|(key, message)| format!("`{key}`: {message}"))?;
        routes.measure(&self.metrics);
        let tokens = match (&settings.tokens, &self.token_issuer) {
            (Some(tokens), Some((issuer, metrics))) => {
                let vendor = TokenVendor::new(tokens, issuer.clone(), metrics.clone())
                    .await
                    .map_err(|error| format!("{error:#}"))?;
                let vendor = Arc::new(vendor);
                vendor.sweep_in_background();
                Some(vendor)
            }
            _ => None,
        };
        Ok(NextParts {
            relay: Arc::new(Relay::new(settings.unmatched.action, Arc::new(routes), self.delivery.clone())),
            webhooks: Arc::new(Webhooks::new(&settings.webhooks, self.replays.clone(), self.metrics.clone())),
            tokens,
            token_cors_origins: settings
                .tokens
                .as_ref()
                .map(|tokens| tokens.cors_origins.clone())
                .unwrap_or_default(),
        })
    }
}

/// What a reload swaps in.
struct NextParts {
    relay: Arc<Relay>,
    webhooks: Arc<Webhooks>,
    tokens: Option<Arc<TokenVendor>>,
    token_cors_origins: Vec<String>,
}

/// The configuration `loaded` as `/v1/status` shows it, loaded now.
pub fn version_of(loaded: &LoadedConfig) -> ConfigVersion {
    ConfigVersion {
        source: loaded.source.to_string(),
        sha256: loaded.sha256.clone(),
        loaded_at_ms: now_ms(),
        reloads: 0,
        last_refused: None,
    }
}

/// The keys that differ between `old` and `new` among those the relay sets up once: the
/// `[server]`, `[momento]`, `[delivery]` and `[admin]` sections, and whether `[tokens]` is
/// there at all.
fn unchangeable_keys(old: &Settings, new: &Settings) -> Vec<String> {
    let mut keys = BTreeSet::new();
    differing("server", &old.server, &new.server, &mut keys);
    differing("momento", &old.momento, &new.momento, &mut keys);
    differing("delivery", &old.delivery, &new.delivery, &mut keys);
    differing("admin", &old.admin, &new.admin, &mut keys);
    // Secrets serialize redacted, so they are compared as themselves.
    if exposed(&old.momento.api_key) != exposed(&new.momento.api_key) {
        keys.insert("momento.api_key".to_owned());
    }
    if exposed(&old.admin.token) != exposed(&new.admin.token) {
        keys.insert("admin.token".to_owned());
    }
    if old.tokens.is_some() != new.tokens.is_some() {
        keys.insert("[tokens] (added or removed)".to_owned());
    }
    keys.into_iter().collect()
}

fn exposed(secret: &Option<Secret>) -> Option<&str> {
    secret.as_ref().map(Secret::expose)
}

/// Adds to `keys` each key under `prefix` whose value differs between `old` and `new`.
fn differing<T: Serialize>(prefix: &str, old: &T, new: &T, keys: &mut BTreeSet<String>) {
    let as_value = |settings: &T| serde_json::to_value(settings).unwrap_or(Value::Null);
    differing_values(prefix, &as_value(old), &as_value(new), keys);
}

fn differing_values(path: &str, old: &Value, new: &Value, keys: &mut BTreeSet<String>) {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            for key in old.keys().chain(new.keys()) {
                let (before, after) =
                    (old.get(key).unwrap_or(&Value::Null), new.get(key).unwrap_or(&Value::Null));
                differing_values(&format!("{path}.{key}"), before, after, keys);
            }
        }
        (old, new) if old != new => {
            keys.insert(path.to_owned());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Settings {
        let text = format!("[webhooks.chat]\nsecrets = [\"a-webhook-secret\"]\n{text}");
        let loaded = config::load_from_str(&text, ConfigSource::BuiltIn, &|_| None, Vec::new());
        loaded.expect("a valid configuration").settings
    }

    #[test]
    fn only_keys_set_up_once_are_named_and_each_by_its_path() {
        let old =
            settings("[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\ntoken = \"first-admin-token-0123\"");
        let same = settings(
            "[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\ntoken = \"first-admin-token-0123\"\n[[routes]]\nname = \"r\"\nmatch = { cache = \"c\", topic = \"t\" }\nsteps = [\"uppercase\"]",
        );
        assert_eq!(unchangeable_keys(&old, &same), Vec::<String>::new());
        let moved = settings(
            "[server]\nlisten = \"127.0.0.1:9999\"\nmax_in_flight = 7\n[admin]\ntoken = \"other-admin-token-0123\"\n[delivery]\nspool_dir = \"elsewhere\"",
        );
        assert_eq!(
            unchangeable_keys(&old, &moved),
            ["admin.token", "delivery.spool_dir", "server.listen", "server.max_in_flight"]
        );
    }
}
