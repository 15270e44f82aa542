//! Signs outgoing requests as the Standard Webhooks spec says (standardwebhooks.com), so a
//! receiver verifies them with any of its libraries: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use keccak_asm::{Digest, Sha3_256};
use sha2::Sha256;

use crate::event::Message;

/// The prefix of a Standard Webhooks secret; the rest is the key in base64.
const PREFIX: &str = "whsec_";

/// The three headers of one signed request.
pub struct Signed {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`, seconds since the epoch.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
}

/// Signs with one key.
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    /// A signer from a secret written `whsec_<base64 key>`. The error never shows the secret.
    pub fn new(secret: &str) -> Result<Self, String> {
        let encoded = secret.strip_prefix(PREFIX).ok_or_else(|| {
            format!("`sign.secret` must start with `{PREFIX}`, as Standard Webhooks secrets do")
        })?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| format!("`sign.secret` must be `{PREFIX}` followed by base64"))?;
        if key.len() < 24 {
            return Err("`sign.secret` holds fewer than 24 bytes of key; use at least 32".into());
        }
        Ok(Signer { key })
    }

    /// Signs `body`, sent at `timestamp` (seconds since the epoch), for `message`. The id is
    /// the same on every retry of the same request, so receivers can drop duplicates.
    pub fn sign(&self, message: &Message, request: &str, body: &[u8], timestamp: u64) -> Signed {
        let id = message_id(message, request, body);
        let timestamp = timestamp.to_string();
        let signature = self.signature(&id, &timestamp, body);
        Signed { id, timestamp, signature }
    }

    /// `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`.
    fn signature(&self, id: &str, timestamp: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// `msg_` and a hash of where the event came from and what is sent: stable across retries,
/// different for each branch of a fan-out that sends something else.
fn message_id(message: &Message, request: &str, body: &[u8]) -> String {
    let mut hash = Sha3_256::new();
    for part in [message.cache.as_bytes(), message.topic.as_bytes(), request.as_bytes()] {
        hash.update(part);
        hash.update([0]);
    }
    for number in [message.sequence_page, message.topic_sequence_number, message.event_timestamp] {
        hash.update(number.to_be_bytes());
    }
    hash.update(body);
    format!("msg_{}", const_hex::encode(&hash.finalize()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_signature_of_the_specs_published_example() {
        // The example of the Standard Webhooks libraries' own tests.
        let signer = Signer::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature =
            signer.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", br#"{"test": 2432232314}"#);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn the_id_is_stable_for_a_request_and_differs_between_bodies() {
        let signer = Signer::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let message = Message::new("c", "t", "hi");
        let first = signer.sign(&message, "POST http://x/", b"es", 1);
        assert_eq!(first.id, signer.sign(&message, "POST http://x/", b"es", 2).id);
        assert_ne!(first.id, signer.sign(&message, "POST http://x/", b"fr", 1).id);
    }

    #[test]
    fn a_secret_without_the_prefix_or_too_short_is_refused_without_showing_it() {
        let error = Signer::new("hunter2-hunter2-hunter2-hunter2").err().unwrap();
        assert!(!error.contains("hunter2"));
        assert!(Signer::new("whsec_c2hvcnQ=").is_err());
    }
}
