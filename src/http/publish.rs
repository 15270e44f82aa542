//! `POST /v1/publish/{cache}/{topic}`: publishes the request body on the embedded backend's
//! bus, as a Momento client would publish on a topic, so that the relay's subscriptions (and
//! `/v1/subscribe` streams) can be tried with no account. Only served on the embedded backend.
//!
//! With `[tokens]` configured it behaves like Momento: a publish needs
//! `Authorization: Bearer <token>` from `/v1/tokens`, allowed on that topic, and the item
//! carries the token's `token_id`. Without `[tokens]`, publishes are anonymous unless
//! `?token_id=` names one, for trying routes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::HttpError;
use super::tokens::bearer;
use crate::tokens::BusRefusal;

/// Momento's limit on one message, which the embedded bus keeps too.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// `?token_id=`: the publisher's token id, as Momento would stamp it from a disposable token.
#[derive(Debug, Default, Deserialize)]
pub struct Publisher {
    /// Empty when the publisher's token has none.
    #[serde(default)]
    pub token_id: Option<String>,
}

/// Publishes the body (UTF-8 text) and answers its sequence number on the topic:
/// `{"topic_sequence_number": n}` (0 when nobody listens).
pub async fn publish(
    State(state): State<AppState>,
    Path((cache, topic)): Path<(String, String)>,
    Query(publisher): Query<Publisher>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, HttpError> {
    let bus = state.bus.as_ref().ok_or(HttpError::NotFound)?;
    let token_id = match &state.local_tokens {
        Some(tokens) => {
            if publisher.token_id.is_some() {
                return Err(HttpError::TokenIdInQuery);
            }
            let token = bearer(&headers).ok_or(BusRefusal::Missing)?;
            tokens.check_publish(token, &cache, &topic)?
        }
        None => publisher.token_id.unwrap_or_default(),
    };
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(HttpError::MessageTooLarge(MAX_MESSAGE_BYTES));
    }
    let text = std::str::from_utf8(&body).map_err(|_| HttpError::NotText)?;
    let sequence = bus.publish(&cache, &topic, text, &token_id);
    Ok(Json(json!({ "topic_sequence_number": sequence, "token_id": token_id })))
}
