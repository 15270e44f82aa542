//! Endpoints for operators and load balancers: `/healthz`, `/readyz`, `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;
use crate::metrics::{CONTENT_TYPE, Levels};

/// `GET /healthz`: 200 while the process serves HTTP. Cheap, for liveness probes.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the relay should get traffic; 503 while draining or while the
/// backend is not ready.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.readiness() {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": reason.code() }))),
    }
}

/// `GET /v1/status`: what the relay holds: backend, readiness, spool and dead-letter counts,
/// the configuration in force, and each subscribed topic's stream.
pub async fn status(State(state): State<AppState>) -> impl IntoResponse {
    let spool = state.spool.as_ref();
    let config = state.config.load_full();
    Json(json!({
        "backend": state.backend.kind().name(),
        "ready": state.health.readiness().is_ok(),
        "delivery": {
            "mode": state.delivery_mode,
            "spooled": spool.map(|spool| spool.event_count()),
            "dead_letters": spool.map(|spool| spool.dead_letter_count()),
        },
        "replica": state.replica,
        "config": &*config,
        "subscriptions": state.listeners.snapshot(),
    }))
}

/// `GET /metrics`: counters, gauges and histograms in the OpenMetrics text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let levels = Levels {
        in_flight: state.in_flight.count() as u64,
        replay_signatures: state.webhooks.remembered_signatures(),
        spooled_events: state.spool.as_ref().map_or(0, |spool| spool.event_count()),
        dead_letters: state.spool.as_ref().map_or(0, |spool| spool.dead_letter_count()),
        ready: u64::from(state.health.readiness().is_ok()),
    };
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], state.metrics.render(levels))
}
