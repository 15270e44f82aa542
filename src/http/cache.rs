//! `PUT` and `GET /v1/cache/{cache}/{key}`, behind the admin token: put a record where the
//! routes' `lookup` steps find it, such as a user's profile under `user:{token_id}`. On the
//! embedded backend this is how the identity pattern gets its users without an account.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::HttpError;
use crate::backend::BackendError;

/// `?ttl=1h`
#[derive(Debug, Deserialize)]
pub struct Ttl {
    #[serde(default, with = "crate::common::duration::optional")]
    ttl: Option<Duration>,
}

fn backend_error(error: BackendError) -> HttpError {
    tracing::warn!(%error, "an admin cache call failed");
    if error.is_retryable() { HttpError::CacheUnavailable } else { HttpError::CacheRefused }
}

/// Stores the body under `key`, with `?ttl=` or the backend's default TTL; answers 204.
pub async fn put(
    State(state): State<AppState>,
    Path((cache, key)): Path<(String, String)>,
    ttl: Result<Query<Ttl>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Response, HttpError> {
    let Query(Ttl { ttl }) = ttl.map_err(|_| HttpError::InvalidTtl)?;
    if body.len() > state.max_body_bytes {
        return Err(HttpError::MessageTooLarge(state.max_body_bytes));
    }
    state.backend.set(&cache, &key, &body, ttl).await.map_err(backend_error)?;
    tracing::info!(cache, "cache item written through the admin API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The value under `key`, as it is stored; 404 `not_found` on a miss.
pub async fn get(
    State(state): State<AppState>,
    Path((cache, key)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    match state.backend.get(&cache, &key).await.map_err(backend_error)? {
        Some(value) => Ok(value.into_response()),
        None => Err(HttpError::NotFound),
    }
}
