//! The service the HTTP server runs. A `POST` to a configured webhook's path goes straight to
//! that webhook's own stack of layers; every other request goes to the router. Webhook posts
//! are nearly all of the relay's traffic, and a stack built of concrete types costs less per
//! request than the router's boxed routes and middleware.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
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

/// The HTTP surface of one configuration: each webhook's stack by path, and the router for
/// the rest.
struct Surface {
    webhooks: Box<[(Box<str>, WebhookStack)]>,
    router: Router,
}

impl Surface {
    /// Serves `/webhooks/<name>` for each configured webhook, and `/webhook` when there is
    /// only one, with their stacks; the router answers everything else, including other
    /// methods on those paths.
    fn new(state: &AppState, request_ids: &SequentialRequestId) -> Self {
        let router = super::router(state.clone(), request_ids);
        let mut webhooks: Vec<(Box<str>, WebhookStack)> = state
            .webhooks
            .all()
            .map(|webhook| (super::webhook_path(webhook).into(), webhook_stack(webhook, state, request_ids)))
            .collect();
        if let Some(only) = state.webhooks.only() {
            webhooks.push(("/webhook".into(), webhook_stack(only, state, request_ids)));
        }
        Surface { webhooks: webhooks.into(), router }
    }

    fn webhook(&self, request: &Request) -> Option<&WebhookStack> {
        if request.method() != Method::POST {
            return None;
        }
        let path = request.uri().path();
        self.webhooks.iter().find(|(webhook_path, _)| **webhook_path == *path).map(|(_, stack)| stack)
    }
}

/// One HTTP thread's door: its request ids, and the surface of the configuration in force.
struct Door {
    request_ids: SequentialRequestId,
    surface: ArcSwap<Surface>,
}

/// The whole HTTP surface, as one HTTP thread serves it. A reload gives it the new
/// configuration's surface; a request already in a stack finishes there.
#[derive(Clone)]
pub struct FrontDoor(Arc<Door>);

impl FrontDoor {
    /// A door on `state`'s surface, known to `state.doors` so that reloads reach it.
    pub fn new(state: &AppState) -> Self {
        let request_ids = SequentialRequestId::new();
        let surface = ArcSwap::from_pointee(Surface::new(state, &request_ids));
        let door = Arc::new(Door { request_ids, surface });
        state.doors.remember(&door);
        FrontDoor(door)
    }
}

/// Every front door made, so that a reload can give each the new surface.
#[derive(Default)]
pub struct Doors(Mutex<Vec<Weak<Door>>>);

impl Doors {
    fn remember(&self, door: &Arc<Door>) {
        let mut doors = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        doors.retain(|door| door.strong_count() > 0);
        doors.push(Arc::downgrade(door));
    }

    /// Gives every open door the surface of `state`, each in an allocation of its own (see
    /// [`AppState::for_thread`]).
    pub fn open_onto(&self, state: &AppState) {
        let mut doors = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        doors.retain(|door| door.strong_count() > 0);
        for door in doors.iter().filter_map(Weak::upgrade) {
            door.surface.store(Arc::new(Surface::new(&state.for_thread(), &door.request_ids)));
        }
    }
}

impl Service<Request> for FrontDoor {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Oneshot<WebhookStack, Request>, RouteFuture<Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both the stacks and the router are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let surface = self.0.surface.load();
        match surface.webhook(&request) {
            Some(stack) => Either::Left(stack.clone().oneshot(request)),
            None => Either::Right(surface.router.clone().call(request)),
        }
    }
}
