//! Every way a request can be refused, with its status code and a small JSON body:
//! `{"error": "<code>", "detail": "<what to do>"}`. Details never carry internal state.

use std::fmt;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Serialize, Serializer};

use crate::accept::AcceptError;
use crate::relay::Refusal;
use crate::sources::webhook::NotAccepted;
use crate::tokens::{BusRefusal, CallerRefusal, GrantRefusal, IssueError, VendRefusal};

/// Every error code the relay answers with; the status table in `docs/src/reference/status-codes.md` lists them
/// all, and `docs/openapi.json` too.
pub const ERROR_CODES: &[&str] = &[
    "unknown_webhook",
    "no_default_webhook",
    "missing_signature",
    "malformed_signature",
    "invalid_signature",
    "body_too_large",
    "unreadable_body",
    "invalid_event",
    "stale_event",
    "future_event",
    "no_route",
    "rejected",
    "processing_failed",
    "backend_error",
    "backend_unavailable",
    "overloaded",
    "timeout",
    "not_found",
    "duplicate_event",
    "spool_full",
    "spool_unavailable",
    "replay_memory_full",
    "unauthorized",
    "no_such_dead_letter",
    "invalid_id",
    "method_not_allowed",
    "invalid_query",
    "message_too_large",
    "not_text",
    "missing_token",
    "invalid_token",
    "forbidden",
    "invalid_claim",
    "rate_limited",
    "token_service_unavailable",
    "token_vending_failed",
    "invalid_request",
    "config_refused",
    "internal_error",
];

/// A refused request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// 422 `config_refused`: a reload found the configuration file invalid, or changing what
    /// cannot change while running; the configuration in force stays.
    #[error("the configuration was not reloaded: {0}")]
    ConfigRefused(String),
    /// The relay refused the event; see [`HttpError::status`] for the code of each reason.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The webhook's accept stage refused the verified body (malformed, stale, a replay).
    #[error(transparent)]
    NotAccepted(#[from] NotAccepted),
    /// 404 `unknown_webhook`: no webhook of that name is configured.
    #[error("no webhook named {0:?} is configured")]
    UnknownWebhook(String),
    /// 404 `no_default_webhook`: `POST /webhook` while several webhooks are configured.
    #[error("several webhooks are configured; post to /webhooks/<name>")]
    NoDefaultWebhook,
    /// 503 `overloaded`, with Retry-After: `server.max_in_flight` requests are in flight.
    #[error("too many requests in flight; retry shortly")]
    Overloaded,
    /// 503 `timeout`, with Retry-After: the request took longer than `server.request_timeout`.
    #[error("the request took longer than the relay's request timeout")]
    Timeout,
    /// 404 `not_found`: no such endpoint.
    #[error("no such endpoint")]
    NotFound,
    /// 401 `unauthorized`: an admin request without the right bearer token.
    #[error("this endpoint needs the admin bearer token")]
    Unauthorized,
    /// 404 `no_such_dead_letter`: an admin request for a dead letter that is not there.
    #[error("no dead letter has id {0}")]
    NoSuchDeadLetter(u64),
    /// 400 `invalid_id`: an admin request whose id is not a number.
    #[error("ids are whole numbers")]
    InvalidId,
    /// 503 `spool_unavailable`: the spool could not be read or written.
    #[error("the spool cannot be used right now")]
    SpoolUnavailable,
    /// 400 `invalid_query`: an admin request whose query string cannot be read.
    #[error("the query string is not valid; use ?limit=N")]
    InvalidQuery,
    /// 413 `message_too_large`: a message for the embedded bus over Momento's 4 KB.
    #[error("a message may hold at most {0} bytes, as on Momento")]
    MessageTooLarge(usize),
    /// 400 `not_text`: a message for the embedded bus that is not UTF-8 text.
    #[error("the message must be UTF-8 text")]
    NotText,
    /// 405 `method_not_allowed`: the path exists, the method does not.
    #[error("this path does not take that method")]
    MethodNotAllowed,
    /// `/v1/tokens` refused: 401 `missing_token` or `invalid_token` (malformed, expired,
    /// badly signed, or signed by a key unknown even after fetching the JWKS again), 403
    /// `forbidden` (another issuer or audience, or claims that make no valid token), 403
    /// `invalid_claim` (a claim whose value is `*`, empty or holds a control character where
    /// a cache, topic or `token_id` is made from it), 429
    /// `rate_limited` with Retry-After, 503 `token_service_unavailable` (JWKS or Momento
    /// unreachable), 502 `token_vending_failed` (Momento refused).
    #[error(transparent)]
    Vend(#[from] VendRefusal),
    /// `/v1/publish` or `/v1/subscribe` refused the token: 401 `missing_token`, 401
    /// `invalid_token`, or 403 `forbidden` (the token may not publish on, or subscribe to,
    /// that topic).
    #[error(transparent)]
    Bus(#[from] BusRefusal),
    /// 503 `overloaded`, with Retry-After: as many `/v1/subscribe` streams as the embedded
    /// bus allows are open.
    #[error("too many subscribe streams are open; retry shortly")]
    TooManyStreams,
    /// 400 `invalid_query`: `?token_id=` while `[tokens]` is configured.
    #[error("with [tokens] configured, the publisher's token sets its token_id; drop ?token_id=")]
    TokenIdInQuery,
    /// 400 `invalid_query`: a `?ttl=` that is not a duration.
    #[error("?ttl= takes a duration such as 30s, 15m or 4h")]
    InvalidTtl,
    /// 400 `invalid_request`: a `/v1/tokens` body that is not `{"expires_in": "5m"}`.
    #[error("the body is empty, or {{\"expires_in\": \"5m\"}} to ask for a shorter-lived token")]
    InvalidTokenRequest,
    /// 503 `backend_unavailable`: an admin cache call the backend could not serve now.
    #[error("the backend is unavailable; retry shortly")]
    CacheUnavailable,
    /// 502 `backend_error`: an admin cache call the backend refused (such as a missing cache).
    #[error("the backend refused the call; the relay's log has the reason")]
    CacheRefused,
    /// 500 `internal_error`: the relay failed in a way it did not expect (a panic).
    #[error("the relay failed unexpectedly; its log has the details")]
    Internal,
}

impl HttpError {
    /// The status code and error code.
    pub fn status(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            HttpError::Refused(refusal) => {
                let status = match refusal {
                    Refusal::NoRoute { .. } => S::NOT_FOUND,
                    Refusal::Rejected { .. } => S::FORBIDDEN,
                    Refusal::ProcessingFailed { .. } => S::UNPROCESSABLE_ENTITY,
                    Refusal::BackendRefused { .. } => S::BAD_GATEWAY,
                    Refusal::Panicked { .. } => S::INTERNAL_SERVER_ERROR,
                    Refusal::MessageTooLarge { .. } => S::PAYLOAD_TOO_LARGE,
                    Refusal::Unavailable { .. } | Refusal::SpoolFull | Refusal::SpoolUnavailable => {
                        S::SERVICE_UNAVAILABLE
                    }
                };
                (status, refusal.code())
            }
            HttpError::NotAccepted(refusal) => match refusal {
                NotAccepted::Invalid(AcceptError::Malformed(_)) => (S::BAD_REQUEST, "invalid_event"),
                NotAccepted::Invalid(AcceptError::Stale { .. }) => (S::UNPROCESSABLE_ENTITY, "stale_event"),
                NotAccepted::Invalid(AcceptError::Future { .. }) => (S::UNPROCESSABLE_ENTITY, "future_event"),
                NotAccepted::Duplicate => (S::CONFLICT, "duplicate_event"),
                NotAccepted::ReplayMemoryFull => (S::SERVICE_UNAVAILABLE, "replay_memory_full"),
            },
            HttpError::UnknownWebhook(_) => (S::NOT_FOUND, "unknown_webhook"),
            HttpError::NoDefaultWebhook => (S::NOT_FOUND, "no_default_webhook"),
            HttpError::Overloaded => (S::SERVICE_UNAVAILABLE, "overloaded"),
            HttpError::Timeout => (S::SERVICE_UNAVAILABLE, "timeout"),
            HttpError::NotFound => (S::NOT_FOUND, "not_found"),
            HttpError::Unauthorized => (S::UNAUTHORIZED, "unauthorized"),
            HttpError::NoSuchDeadLetter(_) => (S::NOT_FOUND, "no_such_dead_letter"),
            HttpError::InvalidId => (S::BAD_REQUEST, "invalid_id"),
            HttpError::SpoolUnavailable => (S::SERVICE_UNAVAILABLE, "spool_unavailable"),
            HttpError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            HttpError::InvalidQuery => (S::BAD_REQUEST, "invalid_query"),
            HttpError::MessageTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "message_too_large"),
            HttpError::NotText => (S::BAD_REQUEST, "not_text"),
            HttpError::Vend(refusal) => match refusal {
                VendRefusal::Caller(CallerRefusal::Missing) => (S::UNAUTHORIZED, "missing_token"),
                VendRefusal::Caller(
                    CallerRefusal::Invalid | CallerRefusal::Expired | CallerRefusal::UnknownKey,
                ) => (S::UNAUTHORIZED, "invalid_token"),
                VendRefusal::Grant(GrantRefusal::UnsafeClaim(_)) => (S::FORBIDDEN, "invalid_claim"),
                VendRefusal::Caller(CallerRefusal::WrongIssuer | CallerRefusal::WrongAudience)
                | VendRefusal::Grant(_) => (S::FORBIDDEN, "forbidden"),
                VendRefusal::Caller(CallerRefusal::KeysUnavailable)
                | VendRefusal::Issue(IssueError::Unavailable(_)) => {
                    (S::SERVICE_UNAVAILABLE, "token_service_unavailable")
                }
                VendRefusal::RateLimited(_) => (S::TOO_MANY_REQUESTS, "rate_limited"),
                VendRefusal::Issue(IssueError::Refused(_)) => (S::BAD_GATEWAY, "token_vending_failed"),
            },
            HttpError::Bus(BusRefusal::Missing) => (S::UNAUTHORIZED, "missing_token"),
            HttpError::Bus(BusRefusal::Invalid) => (S::UNAUTHORIZED, "invalid_token"),
            HttpError::Bus(BusRefusal::MayNotPublish | BusRefusal::MayNotSubscribe) => {
                (S::FORBIDDEN, "forbidden")
            }
            HttpError::TooManyStreams => (S::SERVICE_UNAVAILABLE, "overloaded"),
            HttpError::TokenIdInQuery | HttpError::InvalidTtl => (S::BAD_REQUEST, "invalid_query"),
            HttpError::InvalidTokenRequest => (S::BAD_REQUEST, "invalid_request"),
            HttpError::CacheUnavailable => (S::SERVICE_UNAVAILABLE, "backend_unavailable"),
            HttpError::CacheRefused => (S::BAD_GATEWAY, "backend_error"),
            HttpError::ConfigRefused(_) => (S::UNPROCESSABLE_ENTITY, "config_refused"),
            HttpError::Internal => (S::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        let mut response = (status, Json(Body { error: code, detail: Detail(&self) })).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let HttpError::Vend(VendRefusal::RateLimited(wait)) = &self {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

/// The JSON body of a refusal, written straight from the error without building a value first.
#[derive(Serialize)]
struct Body<'a> {
    error: &'static str,
    detail: Detail<'a>,
}

/// What the client is told: never the token, never why a signature failed, never what
/// Momento said.
struct Detail<'a>(&'a HttpError);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fixed = match self.0 {
            HttpError::Vend(VendRefusal::Caller(refusal)) => refusal_detail(refusal),
            HttpError::Vend(VendRefusal::Issue(IssueError::Unavailable(_))) => {
                "Momento's token service cannot be reached; retry shortly"
            }
            HttpError::Vend(VendRefusal::Issue(IssueError::Refused(_))) => {
                "Momento refused to vend the token; the relay's log has the reason"
            }
            HttpError::Vend(VendRefusal::RateLimited(_)) => {
                "too many tokens for this identity; retry after the Retry-After seconds"
            }
            HttpError::Bus(BusRefusal::Missing) => {
                "send Authorization: Bearer <a token from POST /v1/tokens>"
            }
            HttpError::Bus(BusRefusal::Invalid) => {
                "the token is not one this relay vended, or it has expired; get a new one"
            }
            HttpError::Bus(BusRefusal::MayNotPublish) => "this token may not publish on that topic",
            HttpError::Bus(BusRefusal::MayNotSubscribe) => "this token may not subscribe to that topic",
            error => return fmt::Display::fmt(error, formatter),
        };
        formatter.write_str(fixed)
    }
}

impl Serialize for Detail<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn refusal_detail(refusal: &CallerRefusal) -> &'static str {
    match refusal {
        CallerRefusal::Missing => "send Authorization: Bearer <your application's JWT>",
        CallerRefusal::Invalid | CallerRefusal::Expired | CallerRefusal::UnknownKey => {
            "the bearer token is not valid here: malformed, expired, or not signed by a trusted key"
        }
        CallerRefusal::WrongIssuer | CallerRefusal::WrongAudience => {
            "the bearer token was not issued for this service"
        }
        CallerRefusal::KeysUnavailable => {
            "the keys that verify bearer tokens cannot be fetched; retry shortly"
        }
    }
}

/// The error code of a refused response, for the layer that counts refusals.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_mapping_uses_a_documented_code() {
        let errors = [
            HttpError::UnknownWebhook("x".into()),
            HttpError::NoDefaultWebhook,
            HttpError::Overloaded,
            HttpError::Timeout,
            HttpError::NotFound,
            HttpError::NotAccepted(NotAccepted::ReplayMemoryFull),
            HttpError::Refused(Refusal::SpoolFull),
            HttpError::Refused(Refusal::SpoolUnavailable),
            HttpError::NotAccepted(NotAccepted::Duplicate),
            HttpError::Unauthorized,
            HttpError::SpoolUnavailable,
        ];
        for error in errors {
            assert!(ERROR_CODES.contains(&error.status().1), "{:?}", error.status());
        }
    }

    #[test]
    fn every_refusal_of_the_core_is_a_documented_code() {
        for code in Refusal::CODES {
            assert!(ERROR_CODES.contains(&code), "{code}");
        }
    }

    #[test]
    fn a_spool_that_cannot_be_written_answers_503_spool_unavailable() {
        let (status, code) = HttpError::Refused(Refusal::SpoolUnavailable).status();
        assert_eq!((status, code), (StatusCode::SERVICE_UNAVAILABLE, "spool_unavailable"));
    }

    async fn body_of(error: HttpError) -> serde_json::Value {
        let body = axum::body::to_bytes(error.into_response().into_body(), usize::MAX).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn a_refusal_answers_its_code_and_detail_as_json_even_with_quotes_in_it() {
        let body = body_of(HttpError::UnknownWebhook("say \"hi\"\n".into())).await;
        assert_eq!(body["error"], "unknown_webhook");
        assert_eq!(body["detail"], r#"no webhook named "say \"hi\"\n" is configured"#);
        let body = body_of(HttpError::NotAccepted(NotAccepted::Duplicate)).await;
        assert_eq!(body["error"], "duplicate_event");
        assert_eq!(body["detail"], NotAccepted::Duplicate.to_string());
    }

    #[tokio::test]
    async fn a_refused_publish_is_told_what_to_do_and_nothing_of_the_token() {
        let body = body_of(HttpError::Bus(BusRefusal::Invalid)).await;
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(
            body["detail"],
            "the token is not one this relay vended, or it has expired; get a new one"
        );
    }

    #[test]
    fn overload_answers_503_with_retry_after_and_a_json_body() {
        let response = HttpError::Overloaded.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
