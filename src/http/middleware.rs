//! The relay's own middleware on webhook routes: count and time what was answered, refuse
//! past the in-flight limit, and cap each request's time.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::AppState;
use super::error::{ErrorCode, HttpError};
use super::ingest::OutcomeCode;
use crate::verify::VerifyRejection;

/// Counts every answer by outcome or error code, and times it from the request's arrival.
/// Events are counted, not logged: a log line per event would cost more than the event.
pub async fn count_answers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let response = next.run(request).await;
    let extensions = response.extensions();
    let code = if let Some(OutcomeCode(code)) = extensions.get() {
        state.metrics.events.increment(code);
        tracing::debug!(outcome = code, status = response.status().as_u16(), "event answered");
        Some(*code)
    } else {
        let code = extensions
            .get::<ErrorCode>()
            .map(|ErrorCode(code)| *code)
            .or_else(|| extensions.get::<VerifyRejection>().map(|rejection| rejection.status().1));
        if let Some(code) = code {
            state.metrics.refusals.increment(code);
            log_refusal(code, response.status().as_u16());
        }
        code
    };
    if let Some(histogram) = code.and_then(|code| state.metrics.request_duration.get(code)) {
        histogram.observe_duration(arrived.elapsed());
    }
    response
}

/// Refusals that point at a fault to fix (a secret rotated wrongly, a clock off, a forged
/// request) are warnings; those that a load spike or a client makes in numbers (overload,
/// replays, slow bodies) are counted in metrics and logged at debug, so they cannot flood
/// the log.
fn log_refusal(code: &str, status: u16) {
    match code {
        "missing_signature"
        | "malformed_signature"
        | "invalid_signature"
        | "stale_event"
        | "future_event"
        | "unknown_webhook"
        | "no_default_webhook"
        | "invalid_event"
        | "body_too_large"
        | "spool_full"
        | "spool_unavailable"
        | "internal_error" => {
            tracing::warn!(error = code, status, "request refused");
        }
        _ => tracing::debug!(error = code, status, "request refused"),
    }
}

/// Answers 503 `overloaded` at once instead of queueing past `server.max_in_flight`.
pub async fn limit_in_flight(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        return HttpError::Overloaded.into_response();
    };
    next.run(request).await
}

/// When a webhook request came in, before its body was read.
#[derive(Debug, Clone, Copy)]
pub struct Arrived(pub Instant);

/// Answers 503 `timeout` if a request outlives `server.request_timeout`, so Momento always
/// gets an answer before its 5 s deadline. Records when the request [`Arrived`].
pub async fn enforce_timeout(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let arrived = Instant::now();
    request.extensions_mut().insert(Arrived(arrived));
    match tokio::time::timeout_at(arrived + state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => HttpError::Timeout.into_response(),
    }
}
