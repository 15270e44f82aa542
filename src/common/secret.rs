//! A string that must never be printed: webhook signing secrets, API keys, admin tokens.

use std::fmt;
use std::sync::RwLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret looks like wherever it is displayed, logged or serialized.
pub const REDACTED: &str = "<redacted>";

/// Every secret value read from the configuration or the environment, so that text from
/// elsewhere (a service's error message) can be cleaned of them before it is logged or shown.
static KNOWN_SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Values shorter than this are not looked for: replacing every `abc` in a message would
/// garble it, and a secret that short protects nothing anyway.
const SHORTEST_SCRUBBED: usize = 8;

/// `text` with every secret value the relay has read replaced by [`REDACTED`].
pub fn scrub(text: &str) -> String {
    let known = KNOWN_SECRETS.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut text = text.to_owned();
    for secret in known.iter() {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    text
}

/// A secret value. `Debug`, `Display` and `Serialize` all print [`REDACTED`]; only
/// [`Secret::expose`] gives the value, and only code that uses it (to key an HMAC, to
/// authenticate to Momento) calls it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Wraps a value read from the configuration or the environment, and remembers it for
    /// [`scrub`].
    pub fn read(value: impl Into<String>) -> Self {
        let value = value.into();
        if value.len() >= SHORTEST_SCRUBBED {
            let mut known = KNOWN_SECRETS.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            if !known.contains(&value) {
                known.push(value.clone());
            }
        }
        Self(value)
    }

    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the value is empty, as an unset `${VAR:-}` leaves it.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// Takes strings, and numbers as their digits (a token set through the environment may look
/// like one). Anything else is refused without showing the value.
struct SecretVisitor;

impl serde::de::Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret string")
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Secret, E> {
        Ok(Secret::read(value))
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Secret, E> {
        Ok(Secret::read(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Secret, E> {
        Ok(Secret::read(value.to_string()))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Secret, E> {
        Ok(Secret::read(value.to_string()))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(E::custom("a secret must be a string; quote it"))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(E::custom("a secret must be a string; quote it"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_scrubbed_of_every_secret_read_but_short_ones() {
        let read: Secret = serde_json::from_str("\"an-api-key-echoed-back-0123\"").unwrap();
        let _short = Secret::read("abc");
        let _not_read = Secret::new("a-value-never-read-as-a-secret");
        let message = "invalid key an-api-key-echoed-back-0123 (abc) a-value-never-read-as-a-secret";
        assert_eq!(scrub(message), "invalid key <redacted> (abc) a-value-never-read-as-a-secret");
        assert_eq!(read.expose(), "an-api-key-echoed-back-0123");
    }

    #[test]
    fn a_secret_never_shows_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "<redacted> <redacted>");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"<redacted>\"");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn a_numeric_secret_is_taken_as_its_digits() {
        let secret: Secret =
            toml::from_str::<toml::Table>("s = 1234567890123456").unwrap()["s"].clone().try_into().unwrap();
        assert_eq!(secret.expose(), "1234567890123456");
    }
}
