//! The relay's own middleware: on webhook routes, refuse past the in-flight limit, cap each
//! request's time, and count and time what was answered; on every other route, cap each
//! request's time (`limit_time`).

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::HeaderName;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::AppState;
use super::error::{ErrorCode, HttpError};
use super::ingest::OutcomeCode;
use crate::metrics::REFUSED;
use crate::telemetry::Throttle;
use crate::verify::VerifyRejection;

/// The header carrying the request id (set, or kept, by the outermost layer). A `HeaderName`,
/// not a `&str`, so that looking it up does not parse the name on every request.
static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything in front of a webhook's verification, in one layer: refuse past
/// `server.max_in_flight`, answer 503 `timeout` if the request outlives
/// `server.request_timeout` (so Momento always gets an answer before its 5 s deadline), answer
/// a panic with 500, and count and time every answer by outcome or error code. Events are
/// counted, not logged: a log line per event would cost more than the event.
#[derive(Clone)]
pub struct GuardLayer {
    state: AppState,
}

impl GuardLayer {
    /// Guards with the relay's limits and counters.
    pub fn new(state: AppState) -> Self {
        GuardLayer { state }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner, state: self.state.clone() }
    }
}

/// The service [`GuardLayer`] wraps around a webhook's verification.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let arrived = Instant::now();
        let request_id = request.headers().get(&REQUEST_ID).cloned();
        request.extensions_mut().insert(Arrived(arrived));
        // Calling only builds the inner future; nothing is read or run until it is polled,
        // after the in-flight check. A panic in either is answered 500.
        let handled = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request)))
            .map(|future| AssertUnwindSafe(future).catch_unwind());
        let state = self.state.clone();
        Box::pin(async move {
            let response = match (handled, state.in_flight.try_enter()) {
                (Err(panic), _) => super::answer_panic(panic),
                (Ok(_), None) => HttpError::Overloaded.into_response(),
                (Ok(handled), Some(_entered)) => {
                    match tokio::time::timeout_at(arrived + state.request_timeout, handled).await {
                        Ok(Ok(Ok(response))) => response,
                        Ok(Ok(Err(never))) => match never {},
                        Ok(Err(panic)) => super::answer_panic(panic),
                        Err(_elapsed) => HttpError::Timeout.into_response(),
                    }
                }
            };
            count_answer(&state, &response, arrived, request_id.as_ref().and_then(|id| id.to_str().ok()));
            Ok(response)
        })
    }
}

fn count_answer(state: &AppState, response: &Response, arrived: Instant, request_id: Option<&str>) {
    let extensions = response.extensions();
    let outcome = if let Some(OutcomeCode(code)) = extensions.get() {
        state.metrics.events.increment(code);
        tracing::debug!(outcome = code, status = response.status().as_u16(), request_id, "event answered");
        *code
    } else {
        let code = extensions
            .get::<ErrorCode>()
            .map(|ErrorCode(code)| *code)
            .or_else(|| extensions.get::<VerifyRejection>().map(|rejection| rejection.status().1));
        if let Some(code) = code {
            state.metrics.refusals.increment(code);
            log_refusal(code, response.status().as_u16(), request_id.unwrap_or_default());
        }
        REFUSED
    };
    if let Some(histogram) = state.metrics.request_duration.get(outcome) {
        histogram.observe_duration(arrived.elapsed());
    }
}

/// Refusals that point at a fault to fix (a secret rotated wrongly, a clock off, a forged
/// request) are warnings, at most one a second for each code, since a client can make them in
/// numbers too; those that a load spike or a client makes in numbers as a matter of course
/// (overload, replays, slow bodies) are logged at debug. Metrics count every one.
fn log_refusal(code: &str, status: u16, request_id: &str) {
    static WARNINGS: [Throttle; WARNED_REFUSALS.len()] =
        [const { Throttle::per_second() }; WARNED_REFUSALS.len()];
    match WARNED_REFUSALS.iter().position(|warned| *warned == code) {
        Some(index) => {
            if let Some(suppressed) = WARNINGS[index].admit() {
                tracing::warn!(error = code, status, request_id, suppressed, "request refused");
            }
        }
        None => tracing::debug!(error = code, status, request_id, "request refused"),
    }
}

/// The refusal codes logged as warnings.
const WARNED_REFUSALS: [&str; 12] = [
    "missing_signature",
    "malformed_signature",
    "invalid_signature",
    "stale_event",
    "future_event",
    "unknown_webhook",
    "no_default_webhook",
    "invalid_event",
    "body_too_large",
    "spool_full",
    "spool_unavailable",
    "internal_error",
];

/// When a webhook request came in, before its body was read.
#[derive(Debug, Clone, Copy)]
pub struct Arrived(pub Instant);

/// Answers 503 `timeout` when a request on a route other than a webhook, its body read
/// included, outlives `server.request_timeout`, so that a client sending a body slowly
/// holds no handler longer. A stream's answer (`/v1/subscribe`) begins at once and is not
/// cut.
pub async fn limit_time(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => HttpError::Timeout.into_response(),
    }
}
