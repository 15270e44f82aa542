//! `POST /v1/tokens`: the caller's bearer JWT in, a token for publishers out (see
//! [`crate::tokens`]). Browsers call it, so it answers CORS preflights for the configured
//! origins.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::AppState;
use super::error::HttpError;
use crate::tokens::Vended;

/// The optional request body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VendRequest {
    /// A shorter lifetime than `tokens.expires_in`, such as `"5m"`.
    #[serde(default, with = "crate::common::duration::optional")]
    expires_in: Option<Duration>,
}

/// The bearer token of `Authorization`, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Vends a token: `{token, endpoint, token_id, expires_at, permissions}`.
pub async fn vend(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Vended>, HttpError> {
    let vendor = state.tokens.as_ref().ok_or(HttpError::NotFound)?;
    let request: VendRequest = if body.iter().all(u8::is_ascii_whitespace) {
        VendRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| HttpError::InvalidTokenRequest)?
    };
    Ok(Json(vendor.vend(bearer(&headers), request.expires_in).await?))
}

/// CORS for the configured origins; with none, browsers on other origins are not let in.
pub fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> =
        origins.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}
