//! `GET /v1/subscribe/{cache}/{topic}`: Server-Sent Events of what the embedded backend
//! publishes, the local stand-in for a Momento subscriber (`curl -N`). Only served on the
//! embedded backend.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt, stream};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::AppState;
use super::error::HttpError;

/// Streams each message published on `cache`/`topic` as an SSE `message` event whose data
/// is the text. A subscriber that falls behind gets a `lagged` event with the count missed.
pub async fn subscribe(
    State(state): State<AppState>,
    Path((cache, topic)): Path<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    let bus = state.bus.as_ref().ok_or(HttpError::NotFound)?;
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
    let events = stream::once(futures::future::ready(Ok(greeting))).chain(published).take_until(closed);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
