//! Stage 1, verify: the raw body against the `momento-signature` header, before anything
//! reads the body. HMAC-SHA3-256, lowercase hex, keyed with the webhook's signing secret.
//! [`VerifyLayer`] does it as a tower layer, for the relay's webhooks and for anyone's axum
//! handler.

mod layer;

use hmac::{Hmac, Mac};
use sha3::Sha3_256;

pub use layer::{DEFAULT_MAX_BODY_BYTES, Verified, VerifyLayer, VerifyRejection, VerifyService};

/// The header Momento puts the signature in.
pub const SIGNATURE_HEADER: &str = "momento-signature";

// The block-level HMAC: keying absorbs both padded keys once, so a request's clone only
// hashes its body and one outer block.
type HmacSha3 = Hmac<Sha3_256>;

/// Why a request could not be verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// There is no `momento-signature` header.
    #[error("the momento-signature header is missing")]
    Missing,
    /// The header is not 64 hex digits.
    #[error("the momento-signature header is not 64 hex digits")]
    Malformed,
    /// No configured secret produces this signature for this body.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// A signature that has been checked against its body. Two requests with the same verified
/// signature carry the same signed body, which makes it the natural key for replay checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifiedSignature(pub [u8; 32]);

/// Verifies requests for one webhook against each of its secrets. Each secret is keyed once,
/// here; a request clones the keyed state instead of re-deriving it.
#[derive(Clone)]
pub struct Verifier {
    keyed: Vec<HmacSha3>,
}

impl Verifier {
    /// Keys one HMAC per secret. During a rotation, give both the new and the old secret.
    pub fn new<S: AsRef<[u8]>>(secrets: impl IntoIterator<Item = S>) -> Self {
        let keyed = secrets.into_iter().map(|secret| keyed_mac(secret.as_ref())).collect();
        Verifier { keyed }
    }

    /// Checks `header` (either hex case) against `body` with every secret, in constant time.
    pub fn verify(&self, body: &[u8], header: Option<&[u8]>) -> Result<VerifiedSignature, VerifyError> {
        self.verify_parsed(body, parse_signature(header)?)
    }

    /// Checks an already parsed signature against `body` with every secret, in constant time.
    fn verify_parsed(&self, body: &[u8], claimed: [u8; 32]) -> Result<VerifiedSignature, VerifyError> {
        let matched = self.keyed.iter().fold(false, |matched, keyed| {
            let mut mac = keyed.clone();
            mac.update(body);
            // Every secret is tried, so the time taken does not tell which one matched.
            mac.verify_slice(&claimed).is_ok() | matched
        });
        if matched { Ok(VerifiedSignature(claimed)) } else { Err(VerifyError::Mismatch) }
    }
}

/// The header's 32 bytes: a missing header or one that is not 64 hex digits is refused
/// before the body is read.
fn parse_signature(header: Option<&[u8]>) -> Result<[u8; 32], VerifyError> {
    let header = header.ok_or(VerifyError::Missing)?;
    let mut claimed = [0u8; 32];
    const_hex::decode_to_slice(header, &mut claimed).map_err(|_| VerifyError::Malformed)?;
    Ok(claimed)
}

fn keyed_mac(secret: &[u8]) -> HmacSha3 {
    HmacSha3::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// The `momento-signature` value for `body` under `secret`: lowercase hex.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = keyed_mac(secret);
    mac.update(body);
    const_hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_SECRET: &str = "1234567890";
    const VECTOR_BODY: &[u8] = br#"{"text":"some text", "another_field": "another field" }"#;
    const VECTOR_SIGNATURE: &str = "b43f72787eb66410ff110295b036ef828e5686af21b414ce092f02c05deea3da";

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::new(secrets)
    }

    #[test]
    fn the_published_test_vector_signs_and_verifies() {
        assert_eq!(sign(VECTOR_SECRET.as_bytes(), VECTOR_BODY), VECTOR_SIGNATURE);
        let verified = verifier(&[VECTOR_SECRET]).verify(VECTOR_BODY, Some(VECTOR_SIGNATURE.as_bytes()));
        assert!(verified.is_ok());
    }

    #[test]
    fn a_tampered_body_is_a_mismatch() {
        let tampered = br#"{"text":"some text!", "another_field": "another field" }"#;
        let result = verifier(&[VECTOR_SECRET]).verify(tampered, Some(VECTOR_SIGNATURE.as_bytes()));
        assert_eq!(result, Err(VerifyError::Mismatch));
    }

    #[test]
    fn re_serialised_json_does_not_verify_because_only_the_raw_bytes_are_signed() {
        let reserialised = br#"{"text":"some text","another_field":"another field"}"#;
        let result = verifier(&[VECTOR_SECRET]).verify(reserialised, Some(VECTOR_SIGNATURE.as_bytes()));
        assert_eq!(result, Err(VerifyError::Mismatch));
    }

    #[test]
    fn the_wrong_secret_is_a_mismatch() {
        let result = verifier(&["0987654321"]).verify(VECTOR_BODY, Some(VECTOR_SIGNATURE.as_bytes()));
        assert_eq!(result, Err(VerifyError::Mismatch));
    }

    #[test]
    fn the_second_of_two_secrets_verifies_during_a_rotation() {
        let result =
            verifier(&["new-secret", VECTOR_SECRET]).verify(VECTOR_BODY, Some(VECTOR_SIGNATURE.as_bytes()));
        assert!(result.is_ok());
    }

    #[test]
    fn an_uppercase_hex_signature_verifies() {
        let upper = VECTOR_SIGNATURE.to_uppercase();
        assert!(verifier(&[VECTOR_SECRET]).verify(VECTOR_BODY, Some(upper.as_bytes())).is_ok());
    }

    #[test]
    fn an_empty_or_non_hex_header_is_malformed_and_a_missing_one_is_missing() {
        let verifier = verifier(&[VECTOR_SECRET]);
        let not_hex = "z".repeat(64);
        assert_eq!(verifier.verify(VECTOR_BODY, Some(b"")), Err(VerifyError::Malformed));
        assert_eq!(verifier.verify(VECTOR_BODY, Some(not_hex.as_bytes())), Err(VerifyError::Malformed));
        assert_eq!(
            verifier.verify(VECTOR_BODY, Some(&VECTOR_SIGNATURE.as_bytes()[..62])),
            Err(VerifyError::Malformed)
        );
        assert_eq!(verifier.verify(VECTOR_BODY, None), Err(VerifyError::Missing));
    }

    #[test]
    fn a_verifier_without_secrets_verifies_nothing() {
        let result = verifier(&[]).verify(VECTOR_BODY, Some(VECTOR_SIGNATURE.as_bytes()));
        assert_eq!(result, Err(VerifyError::Mismatch));
    }
}
