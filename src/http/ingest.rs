//! `POST /webhooks/{name}` and `POST /webhook`: where Momento's calls come in. Each configured
//! webhook has a route of its own with a `VerifyLayer` keyed with its secrets in front, so
//! the handler only ever sees verified bytes. It hands them to the relay and turns its
//! answer into a response.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::time::Instant;

use super::AppState;
use super::error::HttpError;
use super::middleware::Arrived;
use crate::relay::Outcome;
use crate::sources::webhook::Webhook;
use crate::verify::Verified;

/// The outcome code of a 2xx response, for the layer that counts outcomes.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeCode(pub &'static str);

/// Takes a verified request for `webhook` through the relay.
pub async fn receive(
    webhook: Arc<Webhook>,
    State(state): State<AppState>,
    arrived: Option<Extension<Arrived>>,
    verified: Verified,
) -> Result<Response, HttpError> {
    let arrived = arrived.map_or_else(Instant::now, |Extension(Arrived(at))| at);
    let message = state.webhooks.accept(&webhook, &verified).await?;
    let outcome = state.relay.dispatch(&webhook.source, message, arrived).await?;
    Ok(respond(outcome))
}

/// `POST /webhooks/{name}` for a name that is not configured.
pub async fn unknown_webhook(name: Result<Path<String>, PathRejection>) -> HttpError {
    match name {
        Ok(Path(name)) => HttpError::UnknownWebhook(name),
        // A name that is not valid UTF-8 cannot be a configured webhook.
        Err(_) => HttpError::NotFound,
    }
}

/// `POST /webhook` while several webhooks are configured.
pub async fn no_default_webhook() -> HttpError {
    HttpError::NoDefaultWebhook
}

/// The JSON body of a 2xx answer, serialized straight from borrowed fields.
#[derive(Serialize)]
struct Answer<'a> {
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn respond(outcome: Outcome) -> Response {
    let code = outcome.code();
    let (status, route, reason) = match &outcome {
        Outcome::Processed { route } => (StatusCode::OK, Some(&**route), None),
        Outcome::Dropped { route, reason } => (StatusCode::OK, Some(&**route), Some(reason.as_str())),
        Outcome::Unmatched => (StatusCode::OK, None, None),
        // 202: safe on disk, not yet done.
        Outcome::Spooled { route } | Outcome::DeadLettered { route } => {
            (StatusCode::ACCEPTED, Some(&**route), None)
        }
    };
    let mut response = (status, Json(Answer { outcome: code, route, reason })).into_response();
    response.extensions_mut().insert(OutcomeCode(code));
    response
}
