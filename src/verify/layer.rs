//! [`VerifyLayer`]: Momento webhook verification as a tower layer, to put in front of any
//! axum handler. It reads the body up to a limit, checks it against the webhook's keyed
//! secrets before anything parses it, answers the refusals itself, and hands the handler
//! the verified bytes and signature as [`Verified`].

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tower::{Layer, Service};

use super::{SIGNATURE_HEADER, VerifiedSignature, Verifier, VerifyError};

/// The body limit when none is set: Momento's payloads are at most 4 KB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// [`SIGNATURE_HEADER`] as a `HeaderName`, so that looking it up does not parse the name on
/// every request.
static SIGNATURE: HeaderName = HeaderName::from_static(SIGNATURE_HEADER);

/// A request body whose `momento-signature` matched one of the webhook's secrets.
/// Extract it in a handler behind a [`VerifyLayer`].
#[derive(Debug, Clone)]
pub struct Verified {
    /// The raw body, exactly as signed.
    pub body: Bytes,
    /// The signature it carried.
    pub signature: VerifiedSignature,
}

/// Why [`VerifyLayer`] refused a request. Each answers with a JSON body
/// `{"error": "<code>", "detail": "..."}`, and the response carries the rejection in its
/// extensions, for outer layers that count refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyRejection {
    /// 401 `missing_signature` / `malformed_signature` / `invalid_signature`.
    #[error(transparent)]
    Unverified(#[from] VerifyError),
    /// 413 `body_too_large`: the body is over the layer's limit.
    #[error("the body is larger than the {0}-byte limit")]
    BodyTooLarge(usize),
    /// 400 `unreadable_body`: the body could not be read (the connection broke mid-body).
    #[error("the request body could not be read")]
    UnreadableBody,
}

impl VerifyRejection {
    /// The status code and error code of the answer.
    pub fn status(self) -> (StatusCode, &'static str) {
        match self {
            VerifyRejection::Unverified(VerifyError::Missing) => {
                (StatusCode::UNAUTHORIZED, "missing_signature")
            }
            VerifyRejection::Unverified(VerifyError::Malformed) => {
                (StatusCode::UNAUTHORIZED, "malformed_signature")
            }
            VerifyRejection::Unverified(VerifyError::Mismatch) => {
                (StatusCode::UNAUTHORIZED, "invalid_signature")
            }
            VerifyRejection::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            VerifyRejection::UnreadableBody => (StatusCode::BAD_REQUEST, "unreadable_body"),
        }
    }
}

impl IntoResponse for VerifyRejection {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        let mut response =
            (status, Json(json!({ "error": code, "detail": self.to_string() }))).into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// Verifies Momento webhook requests before the service behind it sees them.
///
/// ```
/// use axum::{Router, body::Body, http::Request, routing::post};
/// use tower::ServiceExt;
/// use topic_relay::verify::{Verified, Verifier, VerifyLayer, sign};
///
/// async fn handle(verified: Verified) -> String {
///     format!("{} verified bytes", verified.body.len())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let verifier = Verifier::new(["current-secret", "previous-secret"]);
/// let app: Router = Router::new().route("/webhook", post(handle)).layer(VerifyLayer::new(verifier));
///
/// let body = r#"{"text":"hi"}"#;
/// let signed = Request::post("/webhook")
///     .header("momento-signature", sign(b"previous-secret", body.as_bytes()))
///     .body(Body::from(body))
///     .unwrap();
/// assert_eq!(app.clone().oneshot(signed).await.unwrap().status(), 200);
///
/// let forged = Request::post("/webhook").header("momento-signature", "00".repeat(32)).body(Body::from(body)).unwrap();
/// assert_eq!(app.oneshot(forged).await.unwrap().status(), 401);
/// # }
/// ```
#[derive(Clone)]
pub struct VerifyLayer {
    verifier: Arc<Verifier>,
    max_body_bytes: usize,
}

impl VerifyLayer {
    /// A layer that checks requests against `verifier`'s secrets, with bodies of at most
    /// [`DEFAULT_MAX_BODY_BYTES`].
    pub fn new(verifier: Verifier) -> Self {
        VerifyLayer { verifier: Arc::new(verifier), max_body_bytes: DEFAULT_MAX_BODY_BYTES }
    }

    /// Refuses bodies over `limit` bytes with 413, without reading past the limit.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyService { inner, verifier: self.verifier.clone(), max_body_bytes: self.max_body_bytes }
    }
}

/// The service [`VerifyLayer`] wraps around an inner service.
#[derive(Clone)]
pub struct VerifyService<S> {
    inner: S,
    verifier: Arc<Verifier>,
    max_body_bytes: usize,
}

impl<S, B> Service<Request<B>> for VerifyService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was driven to readiness is the one that serves this request.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let (verifier, limit) = (self.verifier.clone(), self.max_body_bytes);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            match verify(&verifier, &parts.headers, body, limit).await {
                Ok(verified) => {
                    let body = Body::from(verified.body.clone());
                    parts.extensions.insert(verified);
                    let mut inner = ready;
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}

/// Checks the header's form first (cheap), then reads the body and checks the signature.
async fn verify<B>(
    verifier: &Verifier,
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Result<Verified, VerifyRejection>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let claimed = super::parse_signature(headers.get(&SIGNATURE).map(|value| value.as_bytes()))?;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse().ok());
    if declared.is_some_and(|length: usize| length > limit) {
        return Err(VerifyRejection::BodyTooLarge(limit));
    }
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => return Err(VerifyRejection::BodyTooLarge(limit)),
        Err(_) => return Err(VerifyRejection::UnreadableBody),
    };
    let signature = verifier.verify_parsed(&body, claimed)?;
    Ok(Verified { body, signature })
}

impl<S: Send + Sync> FromRequestParts<S> for Verified {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Verified>()
            .cloned()
            .ok_or((StatusCode::INTERNAL_SERVER_ERROR, "this handler needs a VerifyLayer in front of it"))
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;
    use crate::verify::sign;

    const SECRET: &str = "layer-secret";

    fn app(limit: usize) -> axum::Router {
        let handler = |verified: Verified, body: Bytes| async move {
            assert_eq!(verified.body, body, "the handler's body is the verified bytes");
            format!("{}:{}", verified.body.len(), const_hex::encode(verified.signature.0))
        };
        axum::Router::new()
            .route("/", axum::routing::post(handler))
            .layer(VerifyLayer::new(Verifier::new([SECRET])).max_body_bytes(limit))
    }

    async fn answer(app: axum::Router, signature: Option<&str>, body: Body) -> (StatusCode, String) {
        let mut request = Request::post("/");
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let response = app.oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn a_signed_body_reaches_the_handler_with_its_bytes_and_signature() {
        let signature = sign(SECRET.as_bytes(), b"hello");
        let (status, text) = answer(app(1024), Some(&signature), Body::from("hello")).await;
        assert_eq!((status, text), (StatusCode::OK, format!("5:{signature}")));
    }

    #[tokio::test]
    async fn unsigned_malformed_and_forged_requests_get_401_with_their_codes() {
        let forged = sign(b"other-secret", b"hello");
        for (signature, code) in [
            (None, "missing_signature"),
            (Some("zz"), "malformed_signature"),
            (Some(forged.as_str()), "invalid_signature"),
        ] {
            let (status, text) = answer(app(1024), signature, Body::from("hello")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(text.contains(&format!("\"error\":\"{code}\"")), "{text}");
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413_even_without_a_declared_length() {
        let signature = sign(SECRET.as_bytes(), &[b'x'; 100]);
        let chunks = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 100]))]);
        let (status, text) = answer(app(50), Some(&signature), Body::from_stream(chunks)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(text.contains("body_too_large"), "{text}");
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_gets_400_and_the_rejection_is_in_the_extensions() {
        let broken = futures::stream::iter([Err::<Bytes, _>(std::io::Error::other("reset"))]);
        let request = Request::post("/").header(SIGNATURE_HEADER, "00".repeat(32));
        let response = app(1024).oneshot(request.body(Body::from_stream(broken)).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.extensions().get(), Some(&VerifyRejection::UnreadableBody));
    }

    #[tokio::test]
    async fn a_handler_without_the_layer_is_told_so() {
        let app = axum::Router::new().route("/", axum::routing::post(|_: Verified| async { "unreachable" }));
        let (status, text) = answer(app, None, Body::from("x")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(text.contains("VerifyLayer"));
    }
}
