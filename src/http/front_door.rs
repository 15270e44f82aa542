//! The service the HTTP server runs. A `POST` to a configured webhook's path goes straight to
//! that webhook's own stack of layers; every other request goes to the router. Webhook posts
//! are nearly all of the relay's traffic, and a stack built of concrete types costs less per
//! request than the router's boxed routes and middleware.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use futures::future::Either;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};
use tower_http::request_id::{PropagateRequestId, SetRequestId};

use super::AppState;
use super::ingest::Receive;
use super::middleware::{Guard, GuardLayer};
use super::request_id::SequentialRequestId;
use super::request_span::RequestSpan;
use crate::sources::webhook::Webhook;
use crate::verify::{VerifyLayer, VerifyService};

/// One webhook's layers, outermost first: the request id layers every request has (see
/// `request_id_layers`), the guard (in-flight limit, timeout, panics, counting), verification
/// (which also limits the body), then the relay.
pub type WebhookStack =
    SetRequestId<RequestSpan<PropagateRequestId<Guard<VerifyService<Receive>>>>, SequentialRequestId>;

/// Builds `webhook`'s stack.
fn webhook_stack(
    webhook: &Arc<Webhook>,
    state: &AppState,
    request_ids: &SequentialRequestId,
) -> WebhookStack {
    super::request_id_layers(request_ids)
        .layer(GuardLayer::new(state.clone()))
        .layer(VerifyLayer::new(webhook.verifier.clone()).max_body_bytes(state.max_body_bytes))
        .service(Receive::new(webhook.clone(), state.clone()))
}

/// The whole HTTP surface: each webhook's stack by path, and the router for the rest.
#[derive(Clone)]
pub struct FrontDoor {
    webhooks: Arc<[(Box<str>, WebhookStack)]>,
    router: Router,
}

impl FrontDoor {
    /// Serves `/webhooks/<name>` for each configured webhook, and `/webhook` when there is
    /// only one, with their stacks; `router` answers everything else, including other methods
    /// on those paths.
    pub fn new(state: &AppState, router: Router, request_ids: &SequentialRequestId) -> Self {
        let mut webhooks: Vec<(Box<str>, WebhookStack)> = state
            .webhooks
            .all()
            .map(|webhook| (super::webhook_path(webhook).into(), webhook_stack(webhook, state, request_ids)))
            .collect();
        if let Some(only) = state.webhooks.only() {
            webhooks.push(("/webhook".into(), webhook_stack(only, state, request_ids)));
        }
        FrontDoor { webhooks: webhooks.into(), router }
    }

    fn webhook(&self, request: &Request) -> Option<&WebhookStack> {
        if request.method() != Method::POST {
            return None;
        }
        let path = request.uri().path();
        self.webhooks.iter().find(|(webhook_path, _)| **webhook_path == *path).map(|(_, stack)| stack)
    }
}

impl Service<Request> for FrontDoor {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Oneshot<WebhookStack, Request>, RouteFuture<Infallible>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.webhook(&request) {
            Some(stack) => Either::Left(stack.clone().oneshot(request)),
            None => Either::Right(self.router.call(request)),
        }
    }
}
