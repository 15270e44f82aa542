//! [`RequestSpanLayer`]: each request runs in a `request` span with its id, method and path,
//! at debug level only. A span per request costs more than the relay's own work on an event
//! (and tower-http's trace layer adds clock reads and a body wrapper on top), so at the
//! default level the span is disabled, and refusal lines carry the request id themselves;
//! `RUST_LOG=debug` puts it on every line.

use std::task::{Context, Poll};

use axum::http::Request;
use tower::{Layer, Service};
use tower_http::request_id::RequestId;
use tracing::Instrument;
use tracing::instrument::Instrumented;

/// Runs each request in a debug-level `request` span; put it inside the layer that sets the
/// request id.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSpanLayer;

impl<S> Layer<S> for RequestSpanLayer {
    type Service = RequestSpan<S>;

    fn layer(&self, inner: S) -> RequestSpan<S> {
        RequestSpan { inner }
    }
}

/// The service [`RequestSpanLayer`] wraps.
#[derive(Debug, Clone)]
pub struct RequestSpan<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RequestSpan<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The macro reads the fields only when the span is enabled.
        let span = tracing::debug_span!(
            "request",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = request
                .extensions()
                .get::<RequestId>()
                .and_then(|id| id.header_value().to_str().ok())
                .unwrap_or_default(),
        );
        let _entered = span.enter();
        self.inner.call(request).instrument(span.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tower::ServiceExt;
    use tracing::subscriber::with_default;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Records the name of the span each event was logged in.
    #[derive(Clone, Default)]
    struct SpanNames(Arc<Mutex<Vec<Option<String>>>>);

    impl<S> tracing_subscriber::Layer<S> for SpanNames
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        fn on_event(&self, _event: &tracing::Event<'_>, context: tracing_subscriber::layer::Context<'_, S>) {
            let name = context.lookup_current().map(|span| span.name().to_owned());
            self.0.lock().unwrap().push(name);
        }
    }

    fn handle(_request: Request<()>) -> std::future::Ready<Result<(), ()>> {
        tracing::info!("handled");
        std::future::ready(Ok(()))
    }

    fn names_logged_at(level: tracing::Level) -> Vec<Option<String>> {
        let names = SpanNames::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::from_level(level))
            .with(names.clone());
        with_default(subscriber, || {
            let service = RequestSpanLayer.layer(tower::service_fn(handle));
            futures::executor::block_on(service.oneshot(Request::new(()))).unwrap();
        });
        names.0.lock().unwrap().clone()
    }

    #[test]
    fn at_debug_level_the_handler_runs_in_a_request_span() {
        assert_eq!(names_logged_at(tracing::Level::DEBUG), vec![Some("request".to_owned())]);
    }

    #[test]
    fn at_info_level_there_is_no_span() {
        assert_eq!(names_logged_at(tracing::Level::INFO), vec![None]);
    }
}
