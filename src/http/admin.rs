//! The admin API under `/v1/admin`: list, inspect, replay and purge dead letters, and list
//! what the spool holds, while the relay runs. Served only when `[admin] token` is set, and
//! only to requests bearing it.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keccak_asm::Sha3_256;
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::HttpError;
use crate::common::now_ms;
use crate::delivery::record::{DeadLetter, SpooledEvent};
use crate::delivery::spool::{Spool, SpoolError};

/// Entries listed at most when `?limit=` is not given.
const DEFAULT_LIMIT: usize = 100;

/// `?limit=N`
#[derive(Debug, Deserialize)]
pub struct Limit {
    limit: Option<usize>,
}

/// A dead letter with its id.
#[derive(Serialize)]
struct IdentifiedLetter {
    id: u64,
    #[serde(flatten)]
    letter: DeadLetter,
}

/// A pending event with its id and due time.
#[derive(Serialize)]
struct PendingEvent {
    id: u64,
    due_ms: u64,
    #[serde(flatten)]
    event: SpooledEvent,
}

/// Refuses requests without `Authorization: Bearer <admin token>`. Both sides are hashed
/// first, so the comparison is constant-time whatever their lengths.
pub async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let expected = state.admin_token.as_ref().map(|token| Sha3_256::digest(token.expose().as_bytes()));
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| Sha3_256::digest(token.trim().as_bytes()));
    match (expected, presented) {
        (Some(expected), Some(presented)) if bool::from(expected.ct_eq(&presented)) => {
            next.run(request).await
        }
        _ => HttpError::Unauthorized.into_response(),
    }
}

fn spool(state: &AppState) -> Result<&Spool, HttpError> {
    state.spool.as_ref().ok_or(HttpError::NotFound)
}

fn parse_id(id: Result<Path<String>, PathRejection>) -> Result<u64, HttpError> {
    id.ok().and_then(|Path(id)| id.parse().ok()).ok_or(HttpError::InvalidId)
}

fn parse_limit(limit: Result<Query<Limit>, QueryRejection>) -> Result<usize, HttpError> {
    let Query(limit) = limit.map_err(|_| HttpError::InvalidQuery)?;
    Ok(limit.limit.unwrap_or(DEFAULT_LIMIT))
}

fn spool_error(error: SpoolError) -> HttpError {
    match &error {
        SpoolError::NoSuchDeadLetter(id) => HttpError::NoSuchDeadLetter(*id),
        SpoolError::Full
        | SpoolError::Storage(_)
        | SpoolError::NoSuchEvent(_)
        | SpoolError::Unreadable(_) => {
            tracing::error!(%error, "an admin change to the spool failed");
            HttpError::SpoolUnavailable
        }
    }
}

fn read_failed(error: anyhow::Error) -> HttpError {
    tracing::error!(%error, "cannot read the spool");
    HttpError::SpoolUnavailable
}

/// `GET /v1/admin/spool`: pending events, soonest due first.
pub async fn pending(
    State(state): State<AppState>,
    limit: Result<Query<Limit>, QueryRejection>,
) -> Result<Response, HttpError> {
    let events = spool(&state)?.pending(parse_limit(limit)?).map_err(read_failed)?;
    let events: Vec<_> =
        events.into_iter().map(|((due_ms, id), event)| PendingEvent { id, due_ms, event }).collect();
    Ok(Json(json!({ "events": events })).into_response())
}

/// `GET /v1/admin/dead-letters`: dead letters, oldest first.
pub async fn dead_letters(
    State(state): State<AppState>,
    limit: Result<Query<Limit>, QueryRejection>,
) -> Result<Response, HttpError> {
    let letters = spool(&state)?.dead_letters(parse_limit(limit)?).map_err(read_failed)?;
    let letters: Vec<_> = letters.into_iter().map(|(id, letter)| IdentifiedLetter { id, letter }).collect();
    Ok(Json(json!({ "dead_letters": letters })).into_response())
}

/// `GET /v1/admin/dead-letters/{id}`
pub async fn dead_letter(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let id = parse_id(id)?;
    let letter =
        spool(&state)?.dead_letter(id).map_err(read_failed)?.ok_or(HttpError::NoSuchDeadLetter(id))?;
    Ok(Json(IdentifiedLetter { id, letter }).into_response())
}

/// `POST /v1/admin/dead-letters/{id}/replay`: back to the spool, due now, attempts reset.
pub async fn replay(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let id = parse_id(id)?;
    spool(&state)?.replay(id, now_ms()).await.map_err(spool_error)?;
    tracing::info!(id, "dead letter replayed");
    Ok(Json(json!({ "replayed": [id] })).into_response())
}

/// `POST /v1/admin/dead-letters/replay`: every dead letter back to the spool.
pub async fn replay_all(State(state): State<AppState>) -> Result<Response, HttpError> {
    let spool = spool(&state)?;
    let ids: Vec<u64> =
        spool.dead_letters(usize::MAX).map_err(read_failed)?.into_iter().map(|(id, _)| id).collect();
    for &id in &ids {
        spool.replay(id, now_ms()).await.map_err(spool_error)?;
    }
    tracing::info!(count = ids.len(), "dead letters replayed");
    Ok(Json(json!({ "replayed": ids })).into_response())
}

/// `DELETE /v1/admin/dead-letters/{id}`
pub async fn purge(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let id = parse_id(id)?;
    spool(&state)?.purge(Some(id)).await.map_err(spool_error)?;
    tracing::warn!(id, "dead letter purged");
    Ok(Json(json!({ "purged": 1 })).into_response())
}

/// `DELETE /v1/admin/dead-letters`: every dead letter.
pub async fn purge_all(State(state): State<AppState>) -> Result<Response, HttpError> {
    let purged = spool(&state)?.purge(None).await.map_err(spool_error)?;
    tracing::warn!(purged, "all dead letters purged");
    Ok(Json(json!({ "purged": purged })).into_response())
}
