//! Small values every part of the relay shares, and nothing else: secrets that never print,
//! durations as configuration writes them, and the clock in Momento's unit. This module
//! imports no other module of the crate, so any of them may use it.

pub mod duration;
mod secret;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use secret::{REDACTED, Secret, scrub};

/// The current time in ms since the epoch, the unit of Momento's timestamps.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, duration_ms)
}

/// A duration in whole ms, saturating.
pub fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
