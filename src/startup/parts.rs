//! The parts [`super::App`] is built from, each from its section of the settings: token
//! vending, the spool, the connection limits, the replica's id and the replay check.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;

use crate::accept::replay::{ReplayGuard, SharedSeenSet};
use crate::backend::{self, Backend};
use crate::config::{BackendKind, DedupMode, DeliveryMode, ServerSettings, Settings};
use crate::delivery::spool::Spool;
use crate::http::{ConnectionLimits, ServerLimits};
use crate::metrics::Metrics;
use crate::tokens::{Issuer, LocalTokens, TokenMetrics, TokenVendor};

/// Token vending, when `[tokens]` is configured: through Momento's `AuthClient` with the
/// relay's credentials, or with a key made now on the embedded backend.
pub async fn token_vendor(settings: &Settings, metrics: &mut Metrics) -> anyhow::Result<VendingParts> {
    let Some(token_settings) = &settings.tokens else { return Ok((None, None, None)) };
    let (issuer, local) = match settings.momento.resolved_backend() {
        BackendKind::Memory => {
            let local = Arc::new(LocalTokens::generate());
            (Issuer::Local(local.clone()), Some(local))
        }
        BackendKind::Momento => {
            let credentials = backend::momento::credential_provider(&settings.momento)?;
            (Issuer::momento(credentials).context("cannot create Momento's auth client")?, None)
        }
    };
    let token_metrics = TokenMetrics::register(metrics);
    let vendor = Arc::new(TokenVendor::new(token_settings, issuer.clone(), token_metrics.clone()).await?);
    vendor.sweep_in_background();
    tracing::info!(
        local = local.is_some(),
        "vending tokens on POST /v1/tokens{}",
        if local.is_some() { " (local tokens of the embedded backend; /v1/publish needs one)" } else { "" }
    );
    Ok((Some(vendor), local, Some((issuer, token_metrics))))
}

/// Token vending: the vendor, the embedded backend's keys, and what a reload builds a new
/// vendor from.
pub type VendingParts = (Option<Arc<TokenVendor>>, Option<Arc<LocalTokens>>, Option<(Issuer, TokenMetrics)>);

/// Opens the spool (unless delivery is off); returns it, its writer thread, and the directory
/// it is in, where subscriptions keep their checkpoints too.
pub fn open_spool(settings: &Settings) -> anyhow::Result<(Option<Spool>, Option<JoinHandle<()>>, PathBuf)> {
    let delivery = &settings.delivery;
    if delivery.mode == DeliveryMode::Off {
        return Ok((None, None, delivery.spool_dir.clone()));
    }
    let (spool, writer, dir) = if delivery.spool_slots > 1 {
        Spool::open_free_slot(&delivery.spool_dir, delivery.spool_slots, delivery.max_spooled_events)?
    } else {
        let (spool, writer) = Spool::open(&delivery.spool_dir, delivery.max_spooled_events)?;
        (spool, writer, delivery.spool_dir.clone())
    };
    tracing::info!(
        dir = %dir.display(),
        mode = delivery.mode.as_str(),
        spooled = spool.event_count(),
        dead_letters = spool.dead_letter_count(),
        "spool open"
    );
    Ok((Some(spool), Some(writer), dir))
}

/// The connection limits of `[server]`, with their counters in `metrics`.
pub fn server_limits(server: &ServerSettings, metrics: &mut Metrics) -> ServerLimits {
    let [slow_requests, idle, over_limit] = metrics.http_connections_closed();
    ServerLimits {
        max_connections: server.max_connections,
        over_limit,
        connection: ConnectionLimits {
            read_timeout: server.read_timeout,
            idle_timeout: server.idle_timeout,
            slow_requests,
            idle,
        },
    }
}

/// This process's id in the leases it holds: the host name (the pod's, in Kubernetes) and
/// a random suffix, so that two relays on one host never mistake each other.
pub fn replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "relay".to_owned());
    format!("{host}-{:08x}", rand::random::<u32>())
}

/// The replay check, sweeping what it may forget once a second.
pub fn replay_guard(settings: &Settings, backend: &Arc<dyn Backend>) -> Arc<ReplayGuard> {
    let shared = match settings.delivery.dedup {
        DedupMode::Memory => None,
        DedupMode::Momento => {
            let cache = settings.delivery.dedup_cache.clone().unwrap_or_else(|| settings.probe_cache());
            Some(SharedSeenSet { backend: backend.clone(), cache })
        }
    };
    let delivery = &settings.delivery;
    let guard = Arc::new(ReplayGuard::new(delivery.dedup_capacity, delivery.dedup_when_full, shared));
    guard.sweep_in_background();
    guard
}
