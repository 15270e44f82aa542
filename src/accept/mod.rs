//! Stage 2, accept: parse a verified body into an event, refuse stale or future ones, and
//! refuse replays (`replay`). Only verified bytes reach this stage.

pub mod replay;

use std::time::Duration;

pub use crate::common::{duration_ms, now_ms};
use crate::event::WebhookEvent;

/// Why a verified body was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    /// The body is not JSON, or lacks a field the event needs.
    #[error("{0}")]
    Malformed(String),
    /// `publish_timestamp` is older than the webhook's `max_age`.
    #[error("publish_timestamp is {age_ms} ms old; the limit is {limit_ms} ms")]
    Stale {
        /// How old it is, in ms.
        age_ms: u64,
        /// The configured limit, in ms.
        limit_ms: u64,
    },
    /// `publish_timestamp` is further in the future than `max_future_skew`.
    #[error("publish_timestamp is {ahead_ms} ms in the future; the limit is {limit_ms} ms")]
    Future {
        /// How far ahead it is, in ms.
        ahead_ms: u64,
        /// The configured limit, in ms.
        limit_ms: u64,
    },
}

/// How old, or how far ahead, an event's `publish_timestamp` may be.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// Older events are stale.
    pub max_age: Duration,
    /// Events further ahead than this are refused as well.
    pub max_future_skew: Duration,
}

/// Parses the body, borrowing strings from it wherever possible.
pub fn parse(body: &[u8]) -> Result<WebhookEvent<'_>, AcceptError> {
    serde_json::from_slice(body).map_err(|error| AcceptError::Malformed(error.to_string()))
}

/// Checks `publish_timestamp` against `now_ms`. Saturating arithmetic: no timestamp, however
/// far off, can make this panic.
pub fn check_freshness(
    event: &WebhookEvent<'_>,
    freshness: Freshness,
    now_ms: u64,
) -> Result<(), AcceptError> {
    let published = event.publish_timestamp;
    let limit_ms = duration_ms(freshness.max_future_skew);
    let ahead_ms = published.saturating_sub(now_ms);
    if ahead_ms > limit_ms {
        return Err(AcceptError::Future { ahead_ms, limit_ms });
    }
    let age_ms = now_ms.saturating_sub(published);
    let limit_ms = duration_ms(freshness.max_age);
    if age_ms > limit_ms {
        return Err(AcceptError::Stale { age_ms, limit_ms });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESHNESS: Freshness =
        Freshness { max_age: Duration::from_secs(60), max_future_skew: Duration::from_secs(5) };

    fn body(publish_timestamp: u64) -> String {
        format!(
            r#"{{"cache":"chat","topic":"topic 1","event_timestamp":1,"publish_timestamp":{publish_timestamp},"topic_sequence_number":3,"token_id":"","text":"hi \"you\""}}"#
        )
    }

    #[test]
    fn a_full_event_parses_and_borrows_unescaped_strings() {
        let body = body(1000);
        let event = parse(body.as_bytes()).unwrap();
        assert_eq!((event.cache.as_ref(), event.text.as_ref()), ("chat", "hi \"you\""));
        assert!(matches!(event.cache, std::borrow::Cow::Borrowed(_)));
        assert_eq!(event.topic_sequence_number, 3);
    }

    #[test]
    fn a_missing_field_is_malformed_and_says_which() {
        let error = parse(br#"{"cache":"chat"}"#).unwrap_err();
        assert!(error.to_string().contains("missing field"), "{error}");
    }

    #[test]
    fn freshness_accepts_the_window_and_refuses_beyond_it_on_both_sides() {
        let now = 1_000_000;
        let check =
            |published: u64| check_freshness(&parse(body(published).as_bytes()).unwrap(), FRESHNESS, now);
        assert!(check(now).is_ok());
        assert!(check(now - 60_000).is_ok());
        assert!(check(now + 5_000).is_ok());
        assert!(matches!(check(now - 60_001), Err(AcceptError::Stale { .. })));
        assert!(matches!(check(now + 5_001), Err(AcceptError::Future { .. })));
    }

    #[test]
    fn extreme_timestamps_are_refused_without_panicking() {
        let now = 1_000_000;
        let (far_future, epoch) = (body(u64::MAX), body(0));
        let far_future = parse(far_future.as_bytes()).unwrap();
        let epoch = parse(epoch.as_bytes()).unwrap();
        assert!(matches!(check_freshness(&far_future, FRESHNESS, now), Err(AcceptError::Future { .. })));
        assert!(matches!(check_freshness(&epoch, FRESHNESS, now), Err(AcceptError::Stale { .. })));
    }
}
