//! Endpoints for operators and load balancers: `/healthz`, `/readyz`, `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;

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

/// `GET /metrics`: counters and gauges in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let in_flight = (state.max_in_flight - state.in_flight.available_permits()) as u64;
    let mut text =
        state.metrics.render(&[("topic_relay_in_flight", "Webhook requests being handled.", in_flight)]);
    state.backend.render_metrics(&mut text);
    ([("content-type", "text/plain; version=0.0.4")], text)
}
