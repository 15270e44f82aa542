//! The HTTP layer: routes, middleware, and the mapping of answers to status codes. It knows
//! the relay's answers but nothing of processors.
//!
//! Webhook requests pass, outermost first: trace (with a request id), answer counting,
//! the in-flight limit, the timeout, verification (`verify::VerifyLayer`, which also limits
//! the body), then the handler.

mod admin;
mod cache;
pub mod error;
mod ingest;
mod middleware;
mod ops;
mod publish;
mod request_id;
mod subscribe;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get, post};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tracing::Instrument;

use crate::backend::{Backend, MemoryBus};
use crate::config::{DeliveryMode, Secret};
use crate::delivery::spool::Spool;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::relay::Relay;
use crate::sources::subscription::ListenerReports;
use crate::sources::webhook::{Webhook, Webhooks};
use crate::tokens::{LocalTokens, TokenVendor};
use crate::verify::VerifyLayer;

/// What handlers share: one allocation, so that every layer's clone is a reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps the shared parts.
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// The relay core.
    pub relay: Arc<Relay>,
    /// The configured webhooks and their accept stage.
    pub webhooks: Arc<Webhooks>,
    /// Liveness and readiness.
    pub health: Arc<Health>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The backend, for its own metrics.
    pub backend: Arc<dyn Backend>,
    /// The embedded backend's bus, when that backend is in use.
    pub bus: Option<MemoryBus>,
    /// What the subscription streams report, for `/v1/status`.
    pub listeners: ListenerReports,
    /// This process's id in the leases it holds.
    pub replica: String,
    /// The spool, unless `delivery.mode = "off"`.
    pub spool: Option<Spool>,
    /// The admin API's bearer token; without one the admin API is not served.
    pub admin_token: Option<Secret>,
    /// `delivery.mode`, for the status endpoint.
    pub delivery_mode: DeliveryMode,
    /// Permits for webhook requests in flight.
    pub in_flight: Arc<Semaphore>,
    /// The number of permits in all.
    pub max_in_flight: usize,
    /// `server.request_timeout`.
    pub request_timeout: Duration,
    /// `server.max_body_bytes`, enforced by each webhook's verification layer.
    pub max_body_bytes: usize,
    /// Cancelled when shutdown closes the listener, to end open subscribe streams.
    pub streams_closed: CancellationToken,
    /// Token vending, when `[tokens]` is configured.
    pub tokens: Option<Arc<TokenVendor>>,
    /// The embedded backend's tokens, when `[tokens]` is configured on it: `/v1/publish`
    /// then needs one.
    pub local_tokens: Option<Arc<LocalTokens>>,
    /// `tokens.cors_origins`.
    pub token_cors_origins: Vec<String>,
}

/// A panic in a handler is answered 500 `internal_error`, and the relay keeps serving.
fn answer_panic(_panic: Box<dyn std::any::Any + Send>) -> axum::response::Response {
    tracing::error!("a request handler panicked");
    error::HttpError::Internal.into_response()
}

/// `/v1/admin/*`, behind the bearer token.
fn admin_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/admin/spool", get(admin::pending))
        .route("/v1/admin/dead-letters", get(admin::dead_letters).delete(admin::purge_all))
        .route("/v1/admin/dead-letters/replay", post(admin::replay_all))
        .route("/v1/admin/dead-letters/{id}", get(admin::dead_letter).delete(admin::purge))
        .route("/v1/admin/dead-letters/{id}/replay", post(admin::replay))
        .route("/v1/cache/{cache}/{key}", get(cache::get).put(cache::put))
        .layer(from_fn_with_state(state, admin::require_token))
}

/// One route per configured webhook, each behind a verification layer keyed with its own
/// secrets; `/webhook` serves the only one, when there is only one.
fn webhook_routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new().route("/webhooks/{name}", post(ingest::unknown_webhook));
    for webhook in state.webhooks.all() {
        router = router.route(&format!("/webhooks/{}", webhook.name), verified_post(webhook, state));
    }
    match state.webhooks.only() {
        Some(webhook) => router.route("/webhook", verified_post(webhook, state)),
        None => router.route("/webhook", post(ingest::no_default_webhook)),
    }
}

/// `POST` for `webhook`: verified with its secrets, then taken through the relay.
fn verified_post(webhook: &Arc<Webhook>, state: &AppState) -> MethodRouter<AppState> {
    let verify = VerifyLayer::new(webhook.verifier.clone()).max_body_bytes(state.max_body_bytes);
    let webhook = webhook.clone();
    post(move |state, arrived, verified| ingest::receive(webhook, state, arrived, verified)).layer(verify)
}

/// The whole HTTP surface.
///
/// Each `Router::layer` call wraps every route in one more boxed service, cloned for each
/// request, so the layers are composed with `ServiceBuilder` and applied in one call each.
pub fn router(state: AppState) -> Router {
    let webhooks = webhook_routes(&state).layer(from_fn_with_state(state.clone(), middleware::guard_webhook));
    let mut router = Router::new()
        .merge(webhooks)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/status", get(ops::status));
    if state.bus.is_some() {
        router = router
            .route("/v1/subscribe/{cache}/{topic}", get(subscribe::subscribe))
            .route("/v1/publish/{cache}/{topic}", post(publish::publish));
    }
    if state.admin_token.is_some() {
        router = router.merge(admin_routes(state.clone()));
    }
    if state.tokens.is_some() {
        // OPTIONS is routed explicitly: the router's method-not-allowed fallback would
        // otherwise answer preflights before the CORS layer sees them.
        let vending = post(tokens::vend).options(|| async { axum::http::StatusCode::NO_CONTENT });
        router = router.route("/v1/tokens", vending.layer(tokens::cors(&state.token_cors_origins)));
    }
    router
        .fallback(|| async { error::HttpError::NotFound })
        .method_not_allowed_fallback(|| async { error::HttpError::MethodNotAllowed })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(request_id::SequentialRequestId::new()))
                .layer(from_fn(in_request_span))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CatchPanicLayer::custom(answer_panic)),
        )
}

/// Runs the request in a `request` span with its id, method and path, at debug level only.
/// A span per request costs more than the relay's own work on an event (and tower-http's
/// trace layer adds clock reads and a body wrapper on top), so at the default level there is
/// none, and refusal lines carry the request id themselves; `RUST_LOG=debug` puts it on every
/// line.
async fn in_request_span(request: Request<axum::body::Body>, next: Next) -> axum::response::Response {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.run(request).await;
    }
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default();
    let span =
        tracing::debug_span!("request", method = %request.method(), path = %request.uri().path(), request_id);
    next.run(request).instrument(span).await
}
