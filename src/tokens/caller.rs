//! Who is asking for a token: the caller's bearer JWT, verified with `jsonwebtoken` against
//! a shared HS256 secret, or against RS256/ES256 public keys from a JWKS URL (`jwks`) or a
//! file.
//!
//! The algorithm is fixed by the key source, never taken from the token: a JWT whose header
//! names another one (`none`, or HS256 signed with a published RSA key) is refused before
//! any key is used.

use std::sync::Arc;

use anyhow::Context;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use super::jwks::JwksKeys;
use super::settings::JwtSettings;

/// Verified claims.
pub type Claims = Map<String, Value>;

/// Why a caller's JWT was not taken. The HTTP layer answers 401 for the first four and 403
/// for the rest, and never says more than the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallerRefusal {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Malformed, badly signed, or of an algorithm this relay does not take.
    #[error("invalid bearer token")]
    Invalid,
    /// Past its `exp`, or before its `nbf`.
    #[error("expired bearer token")]
    Expired,
    /// Signed with a key the relay does not hold, even after fetching the JWKS again.
    #[error("bearer token signed with an unknown key")]
    UnknownKey,
    /// Genuine, but issued by someone else.
    #[error("bearer token from another issuer")]
    WrongIssuer,
    /// Genuine, but meant for another audience.
    #[error("bearer token for another audience")]
    WrongAudience,
    /// The JWKS could not be fetched, so no key could be checked.
    #[error("signing keys unavailable")]
    KeysUnavailable,
}

impl CallerRefusal {
    /// The label of the refusal in metrics.
    pub fn reason(self) -> &'static str {
        match self {
            CallerRefusal::Missing => "missing_token",
            CallerRefusal::Invalid => "invalid_token",
            CallerRefusal::Expired => "expired_token",
            CallerRefusal::UnknownKey => "unknown_key",
            CallerRefusal::WrongIssuer => "wrong_issuer",
            CallerRefusal::WrongAudience => "wrong_audience",
            CallerRefusal::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// A verification key and the one algorithm it verifies.
#[derive(Clone)]
pub(super) struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies callers' JWTs.
pub struct CallerCheck {
    validation: Validation,
    keys: KeySource,
}

/// Where the keys come from.
enum KeySource {
    /// A secret, a JWKS file or a PEM key, read at start.
    Fixed(Arc<Vec<Key>>),
    /// A JWKS URL, fetched again now and then.
    Fetched(JwksKeys),
}

impl CallerCheck {
    /// Loads the keys the settings name; a JWKS URL is fetched now, and a failure there is
    /// logged and retried when the first caller arrives.
    pub async fn new(settings: &JwtSettings) -> anyhow::Result<CallerCheck> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.validate_aud = settings.audience.is_some();
        let mut required = vec!["exp"];
        if let Some(issuer) = &settings.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &settings.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let keys = match (
            &settings.jwks_url,
            &settings.hs256_secret,
            &settings.jwks_file,
            &settings.public_key_file,
        ) {
            (Some(url), ..) => KeySource::Fetched(JwksKeys::start(url, settings.jwks_refresh).await?),
            (_, Some(secret), _, _) => KeySource::Fixed(Arc::new(vec![Key {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.expose().as_bytes()),
            }])),
            (_, _, Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("`tokens.jwt.jwks_file`: cannot read {}", path.display()))?;
                let set: JwkSet = serde_json::from_str(&text)
                    .with_context(|| format!("`tokens.jwt.jwks_file`: {} is not a JWKS", path.display()))?;
                KeySource::Fixed(Arc::new(public_keys(&set)))
            }
            (_, _, _, Some(path)) => {
                let pem = std::fs::read(path).with_context(|| {
                    format!("`tokens.jwt.public_key_file`: cannot read {}", path.display())
                })?;
                KeySource::Fixed(Arc::new(vec![pem_key(&pem).with_context(|| {
                    format!(
                        "`tokens.jwt.public_key_file`: {} is not an RSA or EC public key (PEM)",
                        path.display()
                    )
                })?]))
            }
            _ => KeySource::Fixed(Arc::default()),
        };
        Ok(CallerCheck { validation, keys })
    }

    /// Verifies `bearer` (the header's value after `Bearer `) and returns its claims.
    pub async fn verify(&self, bearer: Option<&str>) -> Result<Claims, CallerRefusal> {
        let token = bearer.map(str::trim).filter(|token| !token.is_empty()).ok_or(CallerRefusal::Missing)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| CallerRefusal::Invalid)?;
        if !matches!(header.alg, Algorithm::HS256 | Algorithm::RS256 | Algorithm::ES256) {
            return Err(CallerRefusal::Invalid);
        }
        let key = self.key_for(header.alg, header.kid.as_deref()).await?;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![key.algorithm];
        jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map(|data| data.claims).map_err(
            |error| match error.kind() {
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => CallerRefusal::Expired,
                ErrorKind::InvalidIssuer => CallerRefusal::WrongIssuer,
                ErrorKind::InvalidAudience => CallerRefusal::WrongAudience,
                ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => CallerRefusal::WrongIssuer,
                ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => CallerRefusal::WrongAudience,
                _ => CallerRefusal::Invalid,
            },
        )
    }

    /// The key that verifies a JWT of `algorithm` naming `kid`; for a JWKS URL, fetched
    /// again if it is not held.
    async fn key_for(&self, algorithm: Algorithm, kid: Option<&str>) -> Result<Key, CallerRefusal> {
        match &self.keys {
            KeySource::Fixed(keys) => find(keys, algorithm, kid).ok_or_else(|| {
                if keys.iter().any(|key| key.algorithm == algorithm) {
                    CallerRefusal::UnknownKey
                } else {
                    // The token names an algorithm none of the relay's keys is for.
                    CallerRefusal::Invalid
                }
            }),
            KeySource::Fetched(jwks) => {
                if let Some(key) = find(&jwks.current(), algorithm, kid) {
                    return Ok(key);
                }
                // A JWKS may gain keys of either kind at its next rotation, never HS256 ones.
                if algorithm == Algorithm::HS256 {
                    return Err(if jwks.current().is_empty() {
                        CallerRefusal::KeysUnavailable
                    } else {
                        CallerRefusal::Invalid
                    });
                }
                let refreshed = jwks.refetch().await;
                let keys = jwks.current();
                find(&keys, algorithm, kid).ok_or(if refreshed.is_err() && keys.is_empty() {
                    CallerRefusal::KeysUnavailable
                } else {
                    CallerRefusal::UnknownKey
                })
            }
        }
    }
}

/// The key for `algorithm` named `kid`; without a `kid`, the only key for `algorithm`.
fn find(keys: &[Key], algorithm: Algorithm, kid: Option<&str>) -> Option<Key> {
    let mut candidates = keys.iter().filter(|key| key.algorithm == algorithm);
    match kid {
        Some(kid) => candidates.find(|key| key.kid.as_deref().is_none_or(|own| own == kid)).cloned(),
        None => {
            let first = candidates.next()?;
            candidates.next().is_none().then(|| first.clone())
        }
    }
}

/// The RSA and EC keys of a JWKS; symmetric (`oct`) and other keys are never taken from one.
pub(super) fn public_keys(set: &JwkSet) -> Vec<Key> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            let algorithm = match key.family() {
                jsonwebtoken::AlgorithmFamily::Rsa => Algorithm::RS256,
                jsonwebtoken::AlgorithmFamily::Ec => Algorithm::ES256,
                _ => return None,
            };
            Some(Key { kid: jwk.common.key_id.clone(), algorithm, key })
        })
        .collect()
}

fn pem_key(pem: &[u8]) -> anyhow::Result<Key> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(Key { kid: None, algorithm: Algorithm::RS256, key });
    }
    let key = DecodingKey::from_ec_pem(pem)?;
    Ok(Key { kid: None, algorithm: Algorithm::ES256, key })
}
