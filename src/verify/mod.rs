//! Stage 1, verify: the raw body against the `momento-signature` header, before anything
//! reads the body. HMAC-SHA3-256, lowercase hex, keyed with the webhook's signing secret.
//! [`VerifyLayer`] does it as a tower layer, for the relay's webhooks and for anyone's axum
//! handler.

mod layer;

use keccak_asm::{Digest, Sha3_256};
use subtle::ConstantTimeEq;

pub use layer::{DEFAULT_MAX_BODY_BYTES, Verified, VerifyLayer, VerifyRejection, VerifyService};

/// The header Momento puts the signature in.
pub const SIGNATURE_HEADER: &str = "momento-signature";

/// SHA3-256's block (its rate), the length HMAC pads its key to.
const BLOCK_BYTES: usize = 136;

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
    keyed: Vec<KeyedHmac>,
}

impl Verifier {
    /// Keys one HMAC per secret. During a rotation, give both the new and the old secret.
    pub fn new<S: AsRef<[u8]>>(secrets: impl IntoIterator<Item = S>) -> Self {
        let keyed = secrets.into_iter().map(|secret| KeyedHmac::new(secret.as_ref())).collect();
        Verifier { keyed }
    }

    /// Checks `header` (either hex case) against `body` with every secret, in constant time.
    pub fn verify(&self, body: &[u8], header: Option<&[u8]>) -> Result<VerifiedSignature, VerifyError> {
        self.verify_parsed(body, parse_signature(header)?)
    }

    /// Checks an already parsed signature against `body` with every secret, in constant time.
    fn verify_parsed(&self, body: &[u8], claimed: [u8; 32]) -> Result<VerifiedSignature, VerifyError> {
        let matched = self.keyed.iter().fold(false, |matched, keyed| {
            // Every secret is tried, so the time taken does not tell which one matched.
            bool::from(keyed.mac(body).ct_eq(&claimed)) | matched
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

/// HMAC-SHA3-256 (RFC 2104) keyed once: the hash states after absorbing the inner and the
/// outer padded key are kept, so a request's MAC only hashes its body and one outer block.
///
/// Written out over `keccak-asm`, whose assembly permutation is the largest single cost of a
/// webhook request, because the `hmac` crate keeps these states only for hashes built on
/// RustCrypto's block-level core, which `keccak-asm` does not offer.
#[derive(Clone)]
struct KeyedHmac {
    inner: Sha3_256,
    outer: Sha3_256,
}

impl KeyedHmac {
    fn new(secret: &[u8]) -> Self {
        let mut key = [0u8; BLOCK_BYTES];
        if secret.len() > BLOCK_BYTES {
            key[..32].copy_from_slice(&Sha3_256::digest(secret));
        } else {
            key[..secret.len()].copy_from_slice(secret);
        }
        let (mut inner, mut outer) = (Sha3_256::new(), Sha3_256::new());
        inner.update(key.map(|byte| byte ^ 0x36));
        outer.update(key.map(|byte| byte ^ 0x5c));
        KeyedHmac { inner, outer }
    }

    fn mac(&self, body: &[u8]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        inner.update(body);
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// The `momento-signature` value for `body` under `secret`: lowercase hex.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    const_hex::encode(KeyedHmac::new(secret).mac(body))
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
    fn the_mac_is_the_hmac_crates_hmac_sha3_256_for_keys_and_bodies_around_the_block_size() {
        use hmac::Mac;
        let lengths = [0, 1, 31, 32, 33, 135, 136, 137, 271, 272, 273, 1000];
        for key_len in lengths {
            let key: Vec<u8> = (0..key_len).map(|i| (i * 7 + 1) as u8).collect();
            let ours = KeyedHmac::new(&key);
            for body_len in lengths {
                let body: Vec<u8> = (0..body_len).map(|i| (i * 13 + 5) as u8).collect();
                let mut theirs = hmac::Hmac::<sha3::Sha3_256>::new_from_slice(&key).unwrap();
                theirs.update(&body);
                let expected: [u8; 32] = theirs.finalize().into_bytes().into();
                assert_eq!(ours.mac(&body), expected, "key of {key_len} bytes, body of {body_len}");
            }
        }
    }

    #[test]
    fn a_verifier_without_secrets_verifies_nothing() {
        let result = verifier(&[]).verify(VECTOR_BODY, Some(VECTOR_SIGNATURE.as_bytes()));
        assert_eq!(result, Err(VerifyError::Mismatch));
    }
}
