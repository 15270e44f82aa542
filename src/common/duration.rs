//! Durations in configuration are human strings such as `"250ms"`, `"4s"` or `"1m"`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Deserializes a duration from a string such as `"4s"`.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// Serializes a duration back to the same human form.
pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*duration).to_string())
}

/// Parses `"250ms"`, `"4s"`, `"1m 30s"` and the like, with an error that shows what was wrong.
pub fn parse(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|error| {
        format!("invalid duration {text:?} ({error}); write it like \"250ms\", \"4s\" or \"1m\"")
    })?;
    if duration > LONGEST {
        return Err(format!("{text:?} is longer than the longest duration allowed, 365 days"));
    }
    Ok(duration)
}

/// No setting needs longer; beyond it, deadlines computed from it could overflow.
const LONGEST: Duration = Duration::from_secs(365 * 24 * 3600);

/// `Option<Duration>` in the same human form, for keys that may be left out.
pub mod optional {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    /// Deserializes `"4h"` into `Some(4 hours)`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        super::deserialize(deserializer).map(Some)
    }

    /// Serializes as the human string, or as nothing.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => super::serialize(duration, serializer),
            None => serializer.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_parse() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("4s").unwrap(), Duration::from_secs(4));
        assert_eq!(parse("1m").unwrap(), Duration::from_secs(60));
    }

    #[test]
    fn durations_beyond_a_year_are_refused() {
        assert!(parse("400days").unwrap_err().contains("365 days"));
    }

    #[test]
    fn a_bare_number_is_refused_because_its_unit_is_ambiguous() {
        assert!(parse("4").unwrap_err().contains("\"4\""));
    }
}
