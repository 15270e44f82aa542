//! Logging with `tracing`: readable lines on a terminal, JSON lines otherwise (containers,
//! log shippers). `TOPIC_RELAY_LOG_FORMAT=json|pretty` overrides the choice, and
//! `RUST_LOG` sets the levels (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Environment variable choosing the log format.
pub const LOG_FORMAT_ENV: &str = "TOPIC_RELAY_LOG_FORMAT";

/// Installs the global subscriber. Log lines go to stderr, so stdout stays for command
/// output.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var(LOG_FORMAT_ENV).as_deref() {
        Ok("json") => true,
        Ok("pretty" | "text") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder.json().with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.try_init()
    };
}

mod throttle;

pub use throttle::Throttle;
