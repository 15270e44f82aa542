//! Tokens of the embedded backend: what `/v1/tokens` vends when the relay runs without a
//! Momento account. They carry the same `token_id`, permissions and expiry as Momento's
//! disposable tokens, signed (HS256) by a key the relay makes at startup, so they die with
//! the process. `POST /v1/publish` and `GET /v1/subscribe` take them as Momento takes its
//! own: each only where the token's permissions allow.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::grant::{Grant, Permission};

/// The `iss` of local tokens, so that no other JWT signed with a guessed key passes.
const ISSUER: &str = "topic-relay-embedded";

/// What a local token says.
#[derive(Debug, Serialize, Deserialize)]
struct LocalClaims {
    iss: String,
    token_id: String,
    permissions: Vec<Permission>,
    iat: u64,
    exp: u64,
}

/// Why the embedded bus refused a local token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BusRefusal {
    /// No bearer token, where one is needed.
    #[error("missing token")]
    Missing,
    /// Not a token this relay vended, or expired.
    #[error("invalid token")]
    Invalid,
    /// The token does not allow publishing on that topic.
    #[error("may not publish")]
    MayNotPublish,
    /// The token does not allow subscribing to that topic.
    #[error("may not subscribe")]
    MayNotSubscribe,
}

/// Makes and checks local tokens.
pub struct LocalTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl LocalTokens {
    /// A fresh random signing key.
    pub fn generate() -> LocalTokens {
        let key: [u8; 32] = rand::random();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        LocalTokens {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
        }
    }

    /// A token for `grant`, and when it expires (seconds since the epoch).
    pub fn issue(&self, grant: &Grant) -> anyhow::Result<(String, u64)> {
        let now = jsonwebtoken::get_current_timestamp();
        let exp = now + grant.expires_in.as_secs();
        let claims = LocalClaims {
            iss: ISSUER.to_owned(),
            token_id: grant.token_id.clone(),
            permissions: grant.permissions.clone(),
            iat: now,
            exp,
        };
        Ok((jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?, exp))
    }

    /// The `token_id` of `token` when it may publish on `topic` in `cache`.
    pub fn check_publish(&self, token: &str, cache: &str, topic: &str) -> Result<String, BusRefusal> {
        let claims = self.claims(token)?;
        if claims.permissions.iter().any(|permission| permission.allows_publish(cache, topic)) {
            Ok(claims.token_id)
        } else {
            Err(BusRefusal::MayNotPublish)
        }
    }

    /// Whether `token` may subscribe to `topic` in `cache`.
    pub fn check_subscribe(&self, token: &str, cache: &str, topic: &str) -> Result<(), BusRefusal> {
        let claims = self.claims(token)?;
        if claims.permissions.iter().any(|permission| permission.allows_subscribe(cache, topic)) {
            Ok(())
        } else {
            Err(BusRefusal::MayNotSubscribe)
        }
    }

    fn claims(&self, token: &str) -> Result<LocalClaims, BusRefusal> {
        jsonwebtoken::decode::<LocalClaims>(token.trim(), &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| BusRefusal::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::tokens::settings::Role;

    fn remaining(exp: u64) -> Duration {
        Duration::from_secs(exp.saturating_sub(jsonwebtoken::get_current_timestamp()))
    }

    fn grant(role: Role, topic: &str) -> Grant {
        Grant {
            token_id: "user-42".into(),
            permissions: vec![Permission { role, cache: "chat".into(), topic: Some(topic.into()) }],
            expires_in: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_token_publishes_where_it_may_with_its_token_id() {
        let tokens = LocalTokens::generate();
        let (token, exp) = tokens.issue(&grant(Role::PublishOnly, "room-1")).unwrap();
        assert!(remaining(exp) > Duration::from_secs(55));
        assert_eq!(tokens.check_publish(&token, "chat", "room-1"), Ok("user-42".into()));
        assert_eq!(tokens.check_publish(&token, "chat", "room-2"), Err(BusRefusal::MayNotPublish));
        assert_eq!(tokens.check_publish(&token, "other", "room-1"), Err(BusRefusal::MayNotPublish));
    }

    #[test]
    fn subscribe_only_tokens_and_all_topics_are_honoured() {
        let tokens = LocalTokens::generate();
        let (reader, _) = tokens.issue(&grant(Role::SubscribeOnly, "room-1")).unwrap();
        assert_eq!(tokens.check_publish(&reader, "chat", "room-1"), Err(BusRefusal::MayNotPublish));
        assert_eq!(tokens.check_subscribe(&reader, "chat", "room-1"), Ok(()));
        assert_eq!(tokens.check_subscribe(&reader, "chat", "room-2"), Err(BusRefusal::MayNotSubscribe));
        let (writer, _) = tokens.issue(&grant(Role::PublishOnly, "room-1")).unwrap();
        assert_eq!(tokens.check_subscribe(&writer, "chat", "room-1"), Err(BusRefusal::MayNotSubscribe));
        let (writer, _) = tokens.issue(&grant(Role::PublishSubscribe, "*")).unwrap();
        assert!(tokens.check_publish(&writer, "chat", "anything").is_ok());
    }

    #[test]
    fn another_relays_tokens_and_tampered_ones_are_invalid() {
        let (token, _) = LocalTokens::generate().issue(&grant(Role::PublishOnly, "room-1")).unwrap();
        let tokens = LocalTokens::generate();
        assert_eq!(tokens.check_publish(&token, "chat", "room-1"), Err(BusRefusal::Invalid));
        assert_eq!(tokens.check_publish("not.a.token", "chat", "room-1"), Err(BusRefusal::Invalid));
    }
}
