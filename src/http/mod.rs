//! The HTTP layer: routes, middleware, and the mapping of answers to status codes. It knows
//! the relay's answers but nothing of processors.
//!
//! Webhook posts go through their own stack (`front_door`): a request id, the guard (the
//! in-flight limit, the timeout, answer counting), verification (`verify::VerifyLayer`, which
//! also limits the body), then `ingest::Receive`. Everything else goes through the router.

mod admin;
mod cache;
mod connection;
pub mod error;
mod front_door;
mod in_flight;
mod ingest;
mod middleware;
mod ops;
mod publish;
mod reload;
mod request_id;
mod request_span;
mod scheduling;
mod server;
mod settings;
mod subscribe;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get, post};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

use crate::backend::{Backend, MemoryBus};
use crate::common::Secret;
use crate::delivery::DeliveryMode;
use crate::delivery::spool::Spool;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::relay::Relay;
use crate::sources::subscription::ListenerReports;
use crate::sources::webhook::{Webhook, Webhooks};
use crate::tokens::{LocalTokens, TokenVendor};
pub use connection::ConnectionLimits;
pub use front_door::{Doors, FrontDoor, WebhookStack};
pub use in_flight::InFlight;
use middleware::GuardLayer;
pub use reload::{
    ConfigVersion, LiveConfigVersion, RefusedReload, ReloadAnswer, ReloadInbox, ReloadReport, ReloadRequests,
};
use request_id::SequentialRequestId;
use request_span::RequestSpanLayer;
pub use scheduling::ThreadScheduling;
pub use server::{Finished, HttpServer, ServerLimits};
pub use settings::{AdminSettings, ServerSettings};

/// What handlers share: one allocation, so that every layer's clone is a reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps the shared parts.
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }

    /// The same state in an allocation of its own, for one HTTP thread: every request clones
    /// the state, and on a count shared with the other threads each clone would take its
    /// cache line away from them.
    pub fn for_thread(&self) -> Self {
        AppState::new((*self.0).clone())
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`]; a clone shares every part.
#[derive(Clone)]
pub struct Shared {
    /// The relay core.
    pub relay: Arc<Relay>,
    /// Whether the operator's routes are served on `server.ops_listen` instead.
    pub ops_apart: bool,
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
    /// Webhook requests in flight, up to `server.max_in_flight`.
    pub in_flight: Arc<InFlight>,
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
    /// Every front door, for a reload to give each the new configuration.
    pub doors: Arc<Doors>,
    /// The configuration in force, for `/v1/status`.
    pub config: LiveConfigVersion,
    /// Where `POST /v1/admin/reload` sends its request.
    pub reload_requests: ReloadRequests,
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
        .route("/v1/admin/reload", post(reload::reload))
        .route("/v1/cache/{cache}/{key}", get(cache::get).put(cache::put))
        .layer(from_fn_with_state(state, admin::require_token))
}

/// What operators read and run: metrics, status and, with a token, the admin API. Served on
/// `server.listen`, or on `server.ops_listen` alone when it is set.
fn operator_routes(state: AppState) -> Router<AppState> {
    let mut router = Router::new().route("/metrics", get(ops::metrics)).route("/v1/status", get(ops::status));
    if state.admin_token.is_some() {
        router = router.merge(admin_routes(state));
    }
    router
}

/// Everything `server.ops_listen` serves: the operator's routes, and `/healthz` and
/// `/readyz` as on the public port.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .merge(operator_routes(state.clone()))
        .fallback(|| async { error::HttpError::NotFound })
        .method_not_allowed_fallback(|| async { error::HttpError::MethodNotAllowed })
        .layer(from_fn_with_state(state.clone(), middleware::limit_time))
        .with_state(state)
}

/// Answers for webhook paths that no stack serves: an unknown name, other methods on a
/// webhook's path, and `POST /webhook` while several webhooks are configured. The front door
/// takes every `POST` to a configured webhook before the router sees it.
fn webhook_routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new().route("/webhooks/{name}", post(ingest::unknown_webhook));
    for webhook in state.webhooks.all() {
        router = router.route(&webhook_path(webhook), MethodRouter::new());
    }
    match state.webhooks.only() {
        Some(_) => router.route("/webhook", MethodRouter::new()),
        None => router.route("/webhook", post(ingest::no_default_webhook)),
    }
}

/// `/webhooks/<name>`: where `webhook` is served, by its stack for `POST` and by the router
/// for anything else.
fn webhook_path(webhook: &Webhook) -> String {
    format!("/webhooks/{}", webhook.name)
}

/// The whole HTTP surface: webhook posts through their own stacks, the rest through the
/// router.
pub fn front_door(state: AppState) -> FrontDoor {
    FrontDoor::new(&state)
}

/// The outermost layers of every request, webhook or not: a request id (kept or made), the
/// debug-level request span, and the id copied onto the response.
type RequestIdLayers = Stack<
    PropagateRequestIdLayer,
    Stack<RequestSpanLayer, Stack<SetRequestIdLayer<SequentialRequestId>, Identity>>,
>;

/// Starts a stack with [`RequestIdLayers`].
fn request_id_layers(request_ids: &SequentialRequestId) -> ServiceBuilder<RequestIdLayers> {
    ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(request_ids.clone()))
        .layer(RequestSpanLayer)
        .layer(PropagateRequestIdLayer::x_request_id())
}

/// Every route but the webhooks' own stacks.
///
/// Each `Router::layer` call wraps every route in one more boxed service, cloned for each
/// request, so the router's layers are composed with `ServiceBuilder` and applied in one call.
fn router(state: AppState, request_ids: &SequentialRequestId) -> Router {
    let webhooks = webhook_routes(&state).layer(GuardLayer::new(state.clone()));
    let mut router =
        Router::new().merge(webhooks).route("/healthz", get(ops::healthz)).route("/readyz", get(ops::readyz));
    if !state.ops_apart {
        router = router.merge(operator_routes(state.clone()));
    }
    if state.bus.is_some() {
        router = router
            .route("/v1/subscribe/{cache}/{topic}", get(subscribe::subscribe))
            .route("/v1/publish/{cache}/{topic}", post(publish::publish));
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
        .layer(from_fn_with_state(state.clone(), middleware::limit_time))
        .with_state(state)
        .layer(request_id_layers(request_ids).layer(CatchPanicLayer::custom(answer_panic)))
}
