//! `POST /webhooks/{name}` and `POST /webhook`: where Momento's calls come in. Hands the raw
//! body to the relay and turns its answer into a response.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::HttpError;
use super::middleware::Arrived;
use crate::relay::Outcome;
use crate::verify::SIGNATURE_HEADER;
use tokio::time::Instant;

/// The outcome code of a 2xx response, for the layer that counts outcomes.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeCode(pub &'static str);

/// `POST /webhooks/{name}`
pub async fn receive_named(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    arrived: Option<Extension<Arrived>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    // A name that is not valid UTF-8 cannot be a configured webhook.
    let Ok(Path(name)) = name else { return Err(HttpError::NotFound) };
    receive(&state, Some(&name), arrived, &headers, body).await
}

/// `POST /webhook`, an alias when exactly one webhook is configured.
pub async fn receive_default(
    State(state): State<AppState>,
    arrived: Option<Extension<Arrived>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    receive(&state, None, arrived, &headers, body).await
}

async fn receive(
    state: &AppState,
    name: Option<&str>,
    arrived: Option<Extension<Arrived>>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let webhook = state.relay.webhook(name)?;
    let body = body.map_err(|rejection| HttpError::from_body_rejection(rejection, state.max_body_bytes))?;
    let signature = headers.get(SIGNATURE_HEADER).map(|value| value.as_bytes());
    let arrived = arrived.map_or_else(Instant::now, |Extension(Arrived(at))| at);
    let outcome = state.relay.receive(webhook, &body, signature, arrived).await?;
    Ok(respond(outcome))
}

fn respond(outcome: Outcome) -> Response {
    let code = outcome.code();
    let (status, body) = match &outcome {
        Outcome::Processed { route } => (StatusCode::OK, json!({ "outcome": code, "route": &**route })),
        Outcome::Dropped { route, reason } => {
            (StatusCode::OK, json!({ "outcome": code, "route": &**route, "reason": reason }))
        }
        Outcome::Unmatched => (StatusCode::OK, json!({ "outcome": code })),
        // 202: safe on disk, not yet done.
        Outcome::Spooled { route } | Outcome::DeadLettered { route } => {
            (StatusCode::ACCEPTED, json!({ "outcome": code, "route": &**route }))
        }
    };
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(OutcomeCode(code));
    response
}
