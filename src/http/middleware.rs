//! The relay's own middleware on webhook routes: count what was answered, refuse past the
//! in-flight limit, and cap each request's time.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::AppState;
use super::error::{ErrorCode, HttpError};
use super::ingest::OutcomeCode;

/// Counts every answer by outcome or error code.
pub async fn count_answers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(OutcomeCode(code)) = response.extensions().get() {
        state.metrics.events.increment(code);
        tracing::info!(outcome = code, status = response.status().as_u16(), "event answered");
    } else if let Some(ErrorCode(code)) = response.extensions().get() {
        state.metrics.refusals.increment(code);
        tracing::warn!(error = code, status = response.status().as_u16(), "request refused");
    }
    response
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
