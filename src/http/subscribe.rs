//! `GET /v1/subscribe/{cache}/{topic}`: Server-Sent Events of what the embedded backend
//! publishes, the local stand-in for a Momento subscriber (`curl -N`). Only served on the
//! embedded backend.
//!
//! With `[tokens]` configured it behaves like Momento: a subscriber needs a token from
//! `/v1/tokens` whose permissions allow subscribing to the topic, as
//! `Authorization: Bearer <token>` or, for browsers' `EventSource`, which cannot set headers,
//! `?token=<token>`. Without `[tokens]`, anyone may subscribe, for trying routes. At most
//! [`MAX_SUBSCRIBE_STREAMS`](crate::backend::MAX_SUBSCRIBE_STREAMS) streams are open at once.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt, stream};
use serde::Deserialize;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::AppState;
use super::error::HttpError;
use super::tokens::bearer;
use crate::tokens::BusRefusal;

/// `?token=`: the subscriber's token, where no header can carry it.
#[derive(Debug, Default, Deserialize)]
pub struct Subscriber {
    /// A token from `/v1/tokens`.
    #[serde(default)]
    token: Option<String>,
}

/// Streams each message published on `cache`/`topic` as an SSE `message` event whose data
/// is the text. A subscriber that falls behind gets a `lagged` event with the count missed.
pub async fn subscribe(
    State(state): State<AppState>,
    Path((cache, topic)): Path<(String, String)>,
    Query(subscriber): Query<Subscriber>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    let bus = state.bus.as_ref().ok_or(HttpError::NotFound)?;
    if let Some(tokens) = &state.local_tokens {
        let token = bearer(&headers).or(subscriber.token.as_deref()).ok_or(BusRefusal::Missing)?;
        tokens.check_subscribe(token, &cache, &topic)?;
    }
    let slot = bus.open_stream().ok_or(HttpError::TooManyStreams)?;
    // The names stay out of the comment: a name may hold a line break, which SSE cannot carry.
    let greeting = Event::default().comment("subscribed");
    let published = bus.subscribe_all().into_stream().filter_map(move |item| {
        let event = match item {
            Ok(published) if published.cache == cache && published.topic == topic => {
                // SSE cannot carry a carriage return; line breaks become separate data lines.
                let text = published.text.replace("\r\n", "\n").replace('\r', "\n");
                Some(Event::default().event("message").data(text))
            }
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                Some(Event::default().event("lagged").data(missed.to_string()))
            }
        };
        futures::future::ready(event.map(Ok))
    });
    let closed = state.streams_closed.clone().cancelled_owned();
    let events = stream::once(futures::future::ready(Ok(greeting)))
        .chain(published)
        .take_until(closed)
        // The stream holds its place among the open ones until it ends.
        .map(move |event| {
            let _held = &slot;
            event
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
