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

/// `GET /v1/status`: what the relay holds: backend, readiness, spool and dead-letter counts.
pub async fn status(State(state): State<AppState>) -> impl IntoResponse {
    let spool = state.spool.as_ref();
    Json(json!({
        "backend": state.backend.kind().name(),
        "ready": state.health.readiness().is_ok(),
        "delivery": {
            "mode": state.delivery_mode,
            "spooled": spool.map(|spool| spool.event_count()),
            "dead_letters": spool.map(|spool| spool.dead_letter_count()),
        },
    }))
}

/// `GET /metrics`: counters and gauges in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let in_flight = (state.max_in_flight - state.in_flight.available_permits()) as u64;
    let mut gauges = vec![
        ("topic_relay_in_flight", "Webhook requests being handled.", in_flight),
        (
            "topic_relay_replay_signatures",
            "Signatures the replay check remembers (at most delivery.dedup_capacity).",
            state.relay.remembered_signatures(),
        ),
    ];
    if let Some(spool) = &state.spool {
        gauges.push((
            "topic_relay_spooled_events",
            "Events in the spool, waiting for redelivery.",
            spool.event_count(),
        ));
        gauges.push((
            "topic_relay_dead_letters",
            "Dead letters kept in the spool.",
            spool.dead_letter_count(),
        ));
        gauges.push((
            "topic_relay_spool_commits",
            "Spool transactions committed (one fsync each).",
            spool.commit_count(),
        ));
    }
    let mut text = state.metrics.render(&gauges);
    state.backend.render_metrics(&mut text);
    ([("content-type", "text/plain; version=0.0.4")], text)
}
