//! `POST /webhooks/{name}` and `POST /webhook`: where Momento's calls come in. Each configured
//! webhook has a stack of its own (see `front_door`) with a `VerifyLayer` keyed with its
//! secrets in front of [`Receive`], so `Receive` only ever sees verified bytes. It hands them
//! to the relay and turns its answer into a response.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Json;
use axum::extract::Path;
use axum::extract::Request;
use axum::extract::rejection::PathRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::time::Instant;
use tower::Service;

use super::AppState;
use super::error::HttpError;
use super::middleware::Arrived;
use crate::relay::Outcome;
use crate::sources::webhook::Webhook;
use crate::verify::Verified;

/// The outcome code of a 2xx response, for the layer that counts outcomes.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeCode(pub &'static str);

/// Takes a verified request for one webhook through the relay: the innermost service of the
/// webhook's stack, behind its `VerifyLayer`.
#[derive(Clone)]
pub struct Receive(Arc<Receiver>);

// One allocation behind the service, so that each request's clone is one reference count.
struct Receiver {
    webhook: Arc<Webhook>,
    state: AppState,
}

impl Receive {
    /// Receives `webhook`'s verified requests.
    pub fn new(webhook: Arc<Webhook>, state: AppState) -> Self {
        Receive(Arc::new(Receiver { webhook, state }))
    }
}

impl Service<Request> for Receive {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let receiver = self.0.clone();
        let extensions = request.extensions_mut();
        let verified = extensions.remove::<Verified>();
        let arrived = extensions.get::<Arrived>().map_or_else(Instant::now, |Arrived(at)| *at);
        Box::pin(async move {
            let Some(verified) = verified else {
                tracing::error!("a webhook request reached the relay without passing verification");
                return Ok(HttpError::Internal.into_response());
            };
            let received = receive(&receiver.webhook, &receiver.state, &verified, arrived).await;
            Ok(received.unwrap_or_else(IntoResponse::into_response))
        })
    }
}

async fn receive(
    webhook: &Webhook,
    state: &AppState,
    verified: &Verified,
    arrived: Instant,
) -> Result<Response, HttpError> {
    let message = state.webhooks.accept(webhook, verified).await?;
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
        Outcome::Processed { route } => (StatusCode::OK, Some(*route), None),
        Outcome::Dropped { route, reason } => (StatusCode::OK, Some(*route), Some(reason.as_str())),
        Outcome::Unmatched => (StatusCode::OK, None, None),
        // 202: safe on disk, not yet done.
        Outcome::Spooled { route } | Outcome::DeadLettered { route } => {
            (StatusCode::ACCEPTED, Some(*route), None)
        }
    };
    let mut response = (status, Json(Answer { outcome: code, route, reason })).into_response();
    response.extensions_mut().insert(OutcomeCode(code));
    response
}
