//! Startup and shutdown: [`App::build`] wires configuration into a running relay, binds the
//! listener, and [`App::run_until_stopped`] serves until SIGTERM or ctrl-c, then drains. On
//! SIGHUP the configuration is read again (`reload`).

mod parts;
mod reload;
mod signals;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use axum::serve::ListenerExt;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backend::{self, Timed};
use crate::config::{LoadedConfig, ServerSettings, Settings};
use crate::delivery::Delivery;
use crate::delivery::redeliver::Redeliverer;
use crate::delivery::spool::Spool;
use crate::health::Health;
use crate::http::{
    self, AppState, Finished, FrontDoor, HttpServer, InFlight, ReloadInbox, ReloadRequests, ServerLimits,
    Shared,
};
use crate::metrics::Metrics;
use crate::processors::ProcessorRegistry;
use crate::relay::Relay;
use crate::route::RouteTable;
use crate::sources::subscription::{Listeners, SubscriptionMetrics};
use crate::sources::webhook::Webhooks;
use parts::{open_spool, replay_guard, replica_id, server_limits, token_vendor};
use reload::Reloader;
use signals::{Hangups, ShutdownSignals};

/// A relay with its listener bound, ready to serve.
pub struct App {
    listener: TcpListener,
    /// `server.ops_listen`'s, when it is set.
    ops_listener: Option<TcpListener>,
    state: AppState,
    server: ServerSettings,
    /// One gauge per HTTP thread, of the connections it holds.
    http_connections: Vec<Gauge>,
    server_limits: ServerLimits,
    stop: CancellationToken,
    redeliverer: Option<Redeliverer>,
    listeners: Listeners,
    spool_writer: Option<JoinHandle<()>>,
    signals: ShutdownSignals,
    hangups: Hangups,
    reloader: Reloader,
    reload_inbox: ReloadInbox,
}

impl App {
    /// Builds the relay with the built-in step kinds.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        Self::build_with(settings, ProcessorRegistry::new()).await
    }

    /// Builds the relay with extra step kinds registered in `registry`. It cannot reload:
    /// there is no file to read again.
    pub async fn build_with(settings: Settings, registry: ProcessorRegistry) -> anyhow::Result<App> {
        let loaded = LoadedConfig {
            settings,
            source: crate::config::ConfigSource::BuiltIn,
            notices: Vec::new(),
            sha256: String::new(),
        };
        Self::assemble(loaded, registry, false).await
    }

    /// Builds the relay from a loaded configuration, which SIGHUP and `POST
    /// /v1/admin/reload` read again from where it came.
    pub async fn build_loaded(loaded: LoadedConfig, registry: ProcessorRegistry) -> anyhow::Result<App> {
        Self::assemble(loaded, registry, true).await
    }

    async fn assemble(
        loaded: LoadedConfig,
        registry: ProcessorRegistry,
        reloadable: bool,
    ) -> anyhow::Result<App> {
        let version = reload::version_of(&loaded);
        let source = reloadable.then(|| loaded.source.clone());
        let settings = loaded.settings;
        let mut routes = RouteTable::build(&settings, &registry)
            .map_err(|(key, message)| anyhow!("`{key}`: {message}"))?;
        let route_names: Vec<&str> = settings.routes.iter().map(|route| route.name.as_str()).collect();
        let mut metrics = Metrics::new(http::error::ERROR_CODES, &route_names);
        let http_connections = metrics.http_connections(settings.server.threads().get());
        let server_limits = server_limits(&settings.server, &mut metrics);
        routes.measure(&metrics);
        let routes = Arc::new(routes);
        let mut connected = backend::connect(&settings.momento, &settings.probe_cache()).await?;
        connected.backend.register_metrics(&mut metrics);
        connected.backend = Arc::new(Timed::new(connected.backend, &metrics));
        let (spool, spool_writer, spool_dir) = open_spool(&settings)?;
        if let Some(spool) = &spool {
            spool.register_metrics(&mut metrics);
        }
        let subscription_metrics = SubscriptionMetrics::register(&mut metrics);
        let (tokens, local_tokens, token_issuer) = token_vendor(&settings, &mut metrics).await?;
        let metrics = Arc::new(metrics);
        let delivery = Arc::new(Delivery::new(
            &settings.delivery,
            settings.server.request_timeout,
            connected.backend.clone(),
            spool.clone(),
        ));
        let live_routes = Arc::new(ArcSwap::new(routes.clone()));
        let redeliverer = spool.clone().map(|spool| {
            Redeliverer::new(
                &settings.delivery,
                delivery.clone(),
                spool,
                live_routes.clone(),
                metrics.clone(),
            )
        });
        let replays = replay_guard(&settings, &connected.backend);
        let webhooks = Arc::new(Webhooks::new(&settings.webhooks, replays.clone(), metrics.clone()));
        let relay = Arc::new(Relay::new(settings.unmatched.action, routes, delivery.clone()));
        let live_relay = Arc::new(ArcSwap::new(relay.clone()));
        let replica = replica_id();
        let listeners = Listeners::new(
            &settings.subscriptions,
            connected.backend.clone(),
            live_relay.clone(),
            &spool_dir,
            &subscription_metrics,
            &replica,
            settings.server.max_body_bytes,
        )?;
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let ops_listener = match settings.server.ops_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address} (server.ops_listen)"))?,
            ),
            None => None,
        };
        let (reload_requests, reload_inbox) = ReloadRequests::new();
        let version = Arc::new(ArcSwap::from_pointee(version));
        let state = AppState::new(Shared {
            relay,
            ops_apart: ops_listener.is_some(),
            webhooks,
            health: Arc::new(Health::new(connected.backend.clone(), listeners.reports())),
            listeners: listeners.reports(),
            replica,
            metrics,
            backend: connected.backend,
            bus: connected.bus,
            spool,
            admin_token: settings.admin.token.clone(),
            delivery_mode: settings.delivery.mode,
            in_flight: Arc::new(InFlight::new(settings.server.max_in_flight)),
            request_timeout: settings.server.request_timeout,
            max_body_bytes: settings.server.max_body_bytes,
            streams_closed: CancellationToken::new(),
            tokens,
            local_tokens,
            token_cors_origins: settings
                .tokens
                .as_ref()
                .map(|tokens| tokens.cors_origins.clone())
                .unwrap_or_default(),
            doors: Arc::default(),
            config: version.clone(),
            reload_requests,
        });
        let reloader = Reloader {
            source,
            registry,
            metrics: state.metrics.clone(),
            delivery,
            replays,
            token_issuer,
            relay: live_relay,
            routes: live_routes,
            state: state.clone(),
            version,
            grace: settings.server.shutdown_grace,
            settings: settings.clone(),
        };
        Ok(App {
            listener,
            ops_listener,
            state,
            http_connections,
            server_limits,
            server: settings.server,
            stop: CancellationToken::new(),
            redeliverer,
            listeners,
            spool_writer,
            signals: ShutdownSignals::catch(),
            hangups: Hangups::catch(),
            reloader,
            reload_inbox,
        })
    }

    /// The port the listener is bound to (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |address| address.port())
    }

    /// The port of `server.ops_listen`, when it is set.
    pub fn ops_port(&self) -> Option<u16> {
        let listener = self.ops_listener.as_ref()?;
        listener.local_addr().ok().map(|address| address.port())
    }

    /// How many threads will serve HTTP (`server.threads`, or one per CPU).
    pub fn http_threads(&self) -> usize {
        self.http_connections.len()
    }

    /// The scheduling policy the HTTP threads will ask for (`server.scheduling`).
    pub fn http_scheduling(&self) -> &'static str {
        self.server.scheduling.as_str()
    }

    /// The HTTP service, for driving the relay without a socket (`tower::ServiceExt::oneshot`):
    /// a front door of its own, as each HTTP thread has.
    pub fn service(&self) -> FrontDoor {
        http::front_door(self.state.clone())
    }

    /// The spool, unless `delivery.mode = "off"`: for code that embeds the relay and wants to
    /// look into it or close it.
    pub fn spool(&self) -> Option<Spool> {
        self.state.spool.clone()
    }

    /// A token that, when cancelled, shuts the relay down exactly as SIGTERM does.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Serves, and redelivers what the spool holds, until SIGTERM, ctrl-c or the stop token.
    /// Then: `/readyz` turns 503, new events are still taken for `server.drain_delay`, the
    /// listener closes, in-flight requests and redelivery attempts get up to
    /// `server.shutdown_grace` to finish, and the spool is flushed and closed.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let stop_redelivery = CancellationToken::new();
        let redelivery = self.redeliverer.map(|worker| tokio::spawn(worker.run(stop_redelivery.clone())));
        let listening = self.listeners.start();
        let stop_reloading = CancellationToken::new();
        let reloading = tokio::spawn(self.reloader.serve(
            listening,
            self.hangups,
            self.reload_inbox,
            stop_reloading.clone(),
        ));
        // The operator's port serves until the very end, so that the metrics of a draining
        // relay can still be read.
        let ops_stopped = CancellationToken::new();
        let ops_server = self.ops_listener.map(|listener| {
            let router = http::ops_router(self.state.clone());
            let stopped = ops_stopped.clone();
            tokio::spawn(async move {
                let listener = listener.tap_io(|connection| {
                    let _ = connection.set_nodelay(true);
                });
                let serving = axum::serve(listener, router).with_graceful_shutdown(stopped.cancelled_owned());
                if let Err(error) = serving.await {
                    tracing::error!(%error, "the operator's listener failed");
                }
            })
        });
        let listener_closed = CancellationToken::new();
        let begin_shutdown = drain_on_signal(
            self.signals,
            self.stop.clone(),
            self.state.clone(),
            self.server.drain_delay,
            listener_closed.clone(),
        );
        let state = self.state.clone();
        let front_door = move || http::front_door(state.for_thread());
        let mut server = HttpServer::start(
            self.listener,
            front_door,
            self.http_connections,
            self.server_limits,
            self.server.scheduling,
            listener_closed,
        )
        .context("cannot start the HTTP server's threads")?;
        tokio::select! {
            () = begin_shutdown => {}
            error = server.failed() => return Err(anyhow::Error::new(error).context("the HTTP server failed")),
        }
        // One grace period, from the moment the listener closes, for everything still under way.
        let grace = self.server.shutdown_grace;
        let deadline = tokio::time::Instant::now() + grace;
        let finished = server.finish(deadline).await.context("the HTTP server failed")?;
        if finished == Finished::CutOff {
            tracing::warn!(grace = %humantime::format_duration(grace), "shutdown grace ran out with requests still in flight");
        }
        // Subscriptions stop taking items, finish or spool what they hold, write their
        // checkpoints and release their leases. A reload under way finishes first.
        stop_reloading.cancel();
        match reloading.await {
            Ok(listening) => listening.stop(deadline).await,
            Err(error) => {
                tracing::error!(%error, "the reload task failed; subscriptions were not stopped in order")
            }
        }
        stop_redelivery.cancel();
        if let Some(mut redelivery) = redelivery
            && tokio::time::timeout_at(deadline, &mut redelivery).await.is_err()
        {
            redelivery.abort();
            let _ = redelivery.await;
            tracing::warn!("redelivery attempts cut off by the shutdown grace resume at the next start");
        }
        if let Some(spool) = &self.state.spool {
            spool.close().await.context("cannot flush the spool")?;
        }
        if let Some(writer) = self.spool_writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        ops_stopped.cancel();
        if let Some(ops_server) = ops_server
            && tokio::time::timeout(Duration::from_secs(1), ops_server).await.is_err()
        {
            tracing::debug!("the operator's listener was cut off at shutdown");
        }
        self.state.backend.close();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Waits for SIGTERM, ctrl-c or `stop`; then turns `/readyz` to 503, keeps taking events for
/// `drain_delay`, ends open subscribe streams, and lets the server close its listener.
async fn drain_on_signal(
    signals: ShutdownSignals,
    stop: CancellationToken,
    state: AppState,
    drain_delay: Duration,
    closed: CancellationToken,
) {
    tokio::select! {
        () = signals.received() => {}
        () = stop.cancelled() => {}
    }
    tracing::info!(drain_delay = %humantime::format_duration(drain_delay), "shutting down: /readyz now answers 503");
    state.health.start_draining();
    tokio::time::sleep(drain_delay).await;
    tracing::info!("closing the listener; waiting for requests in flight");
    state.streams_closed.cancel();
    closed.cancel();
}
