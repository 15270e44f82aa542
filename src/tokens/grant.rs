//! What a caller's token grants: its `token_id` and permissions, rendered from the configured
//! templates over the caller's verified claims.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::caller::Claims;
use super::claims::{ClaimError, ClaimTemplate, is_literal_name, is_token_id_part};
use super::settings::{MAX_TOKEN_ID_LEN, Role, TokenSettings};

/// Everything, cache or topic, when a permission names it.
pub const ALL: &str = "*";

/// One permission, as granted to one caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// What the holder may do.
    pub role: Role,
    /// The cache, or `"*"`.
    pub cache: String,
    /// The topic, or `"*"`, for topic roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

impl Permission {
    /// Whether the permission lets its holder publish on `topic` in `cache`.
    pub fn allows_publish(&self, cache: &str, topic: &str) -> bool {
        self.role.may_publish() && self.covers(cache, topic)
    }

    /// Whether the permission lets its holder subscribe to `topic` in `cache`.
    pub fn allows_subscribe(&self, cache: &str, topic: &str) -> bool {
        self.role.may_subscribe() && self.covers(cache, topic)
    }

    fn covers(&self, cache: &str, topic: &str) -> bool {
        (self.cache == ALL || self.cache == cache)
            && self.topic.as_deref().is_some_and(|own| own == ALL || own == topic)
    }
}

/// What one token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Stamped by Momento on everything the holder publishes.
    pub token_id: String,
    /// What the holder may do.
    pub permissions: Vec<Permission>,
    /// How long the token lives.
    pub expires_in: Duration,
}

/// Why the claims do not make a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantRefusal {
    /// A template names a claim the JWT does not carry (or that is not a scalar).
    #[error("the caller's token lacks the claim `{0}` that the token settings use")]
    MissingClaim(String),
    /// `token_id` came out empty.
    #[error("the token_id made from the caller's claims is empty")]
    EmptyTokenId,
    /// `token_id` came out longer than Momento allows.
    #[error("the token_id made from the caller's claims is longer than Momento's 64 characters")]
    TokenIdTooLong,
    /// A permission's cache or topic came out empty.
    #[error("a permission's cache or topic made from the caller's claims is empty")]
    EmptyScope,
    /// `token_id` would start or end with white space.
    #[error("the token_id made from the caller's claims starts or ends with white space")]
    TokenIdNotTrimmed,
    /// A claim's value cannot be used where the template puts it: `*`, empty or a control
    /// character in a cache or topic name, or a control character in a `token_id`.
    #[error("the caller's claim `{0}` cannot be used: it is empty, holds `*` or a control character")]
    UnsafeClaim(String),
}

impl GrantRefusal {
    /// The label of the refusal in metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            GrantRefusal::MissingClaim(_) => "missing_claim",
            GrantRefusal::EmptyTokenId => "empty_token_id",
            GrantRefusal::TokenIdTooLong => "token_id_too_long",
            GrantRefusal::EmptyScope => "empty_scope",
            GrantRefusal::TokenIdNotTrimmed => "token_id_not_trimmed",
            GrantRefusal::UnsafeClaim(_) => "unsafe_claim",
        }
    }
}

/// The parsed templates of `[tokens]`.
pub struct GrantTemplate {
    token_id: ClaimTemplate,
    permissions: Vec<(Role, ClaimTemplate, Option<ClaimTemplate>)>,
    expires_in: Duration,
}

impl GrantTemplate {
    /// Parses the templates; the settings were checked at load, so this fails only on
    /// settings that skipped that check.
    pub fn new(settings: &TokenSettings) -> Result<GrantTemplate, String> {
        let permissions = settings
            .permissions
            .iter()
            .map(|permission| {
                let topic = permission.topic.as_deref().map(ClaimTemplate::parse).transpose()?;
                Ok((permission.role, ClaimTemplate::parse(&permission.cache)?, topic))
            })
            .collect::<Result<_, String>>()?;
        Ok(GrantTemplate {
            token_id: ClaimTemplate::parse(&settings.token_id)?,
            permissions,
            expires_in: settings.expires_in,
        })
    }

    /// The longest lifetime a token gets.
    pub fn max_expires_in(&self) -> Duration {
        self.expires_in
    }

    /// What `claims` earn; `asked` shortens the lifetime, never lengthens it. A value taken
    /// from a claim is a literal name: a claim of `"*"` never widens a permission to every
    /// cache or topic.
    pub fn grant(&self, claims: &Claims, asked: Option<Duration>) -> Result<Grant, GrantRefusal> {
        let token_id = self.token_id.render(claims, is_token_id_part).map_err(refusal)?;
        if token_id.trim().is_empty() {
            return Err(GrantRefusal::EmptyTokenId);
        }
        if token_id.trim() != token_id {
            return Err(GrantRefusal::TokenIdNotTrimmed);
        }
        if token_id.chars().count() > MAX_TOKEN_ID_LEN {
            return Err(GrantRefusal::TokenIdTooLong);
        }
        let mut permissions = Vec::with_capacity(self.permissions.len());
        for (role, cache, topic) in &self.permissions {
            let cache = cache.render(claims, is_literal_name).map_err(refusal)?;
            let topic = topic
                .as_ref()
                .map(|topic| topic.render(claims, is_literal_name))
                .transpose()
                .map_err(refusal)?;
            if cache.is_empty() || topic.as_deref() == Some("") {
                return Err(GrantRefusal::EmptyScope);
            }
            permissions.push(Permission { role: *role, cache, topic });
        }
        let expires_in =
            asked.map_or(self.expires_in, |asked| asked.clamp(Duration::from_secs(1), self.expires_in));
        Ok(Grant { token_id, permissions, expires_in })
    }
}

fn refusal(error: ClaimError) -> GrantRefusal {
    match error {
        ClaimError::Missing(claim) => GrantRefusal::MissingClaim(claim),
        ClaimError::Unacceptable(claim) => GrantRefusal::UnsafeClaim(claim),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tokens::settings::{JwtSettings, PermissionSettings};

    fn template(token_id: &str, topic: &str) -> GrantTemplate {
        GrantTemplate::new(&TokenSettings {
            jwt: JwtSettings::default(),
            token_id: token_id.into(),
            expires_in: Duration::from_secs(1800),
            permissions: vec![PermissionSettings {
                role: Role::PublishOnly,
                cache: "chat".into(),
                topic: Some(topic.into()),
            }],
            rate_limit: None,
            cors_origins: vec![],
        })
        .unwrap()
    }

    fn claims(value: serde_json::Value) -> Claims {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn the_token_id_and_topics_come_from_the_claims() {
        let grant = template("{sub}:{name}", "inbox-{sub}")
            .grant(&claims(json!({"sub": "42", "name": "ada"})), None)
            .unwrap();
        assert_eq!(grant.token_id, "42:ada");
        assert_eq!(grant.permissions[0].topic.as_deref(), Some("inbox-42"));
        assert!(grant.permissions[0].allows_publish("chat", "inbox-42"));
        assert!(!grant.permissions[0].allows_publish("chat", "inbox-43"));
        assert_eq!(grant.expires_in, Duration::from_secs(1800));
    }

    #[test]
    fn a_caller_may_ask_for_a_shorter_life_but_not_a_longer_one() {
        let template = template("{sub}", "room");
        let short = template.grant(&claims(json!({"sub": "a"})), Some(Duration::from_secs(60))).unwrap();
        let long = template.grant(&claims(json!({"sub": "a"})), Some(Duration::from_secs(99_999))).unwrap();
        assert_eq!((short.expires_in.as_secs(), long.expires_in.as_secs()), (60, 1800));
    }

    #[test]
    fn token_ids_that_are_empty_or_too_long_or_lack_a_claim_are_refused() {
        let template = template("{sub}", "room");
        let refused = |value| template.grant(&claims(value), None).unwrap_err();
        assert_eq!(refused(json!({"sub": ""})), GrantRefusal::EmptyTokenId);
        assert_eq!(refused(json!({"sub": "x".repeat(65)})), GrantRefusal::TokenIdTooLong);
        assert_eq!(refused(json!({})), GrantRefusal::MissingClaim("sub".into()));
        assert!(template.grant(&claims(json!({"sub": "x".repeat(64)})), None).is_ok());
        assert_eq!(refused(json!({"sub": " user-42"})), GrantRefusal::TokenIdNotTrimmed);
        assert_eq!(refused(json!({"sub": "user-42\n"})), GrantRefusal::UnsafeClaim("sub".into()));
        assert_eq!(refused(json!({"sub": "é".repeat(65)})), GrantRefusal::TokenIdTooLong);
    }

    #[test]
    fn a_claim_of_star_never_widens_a_permission_to_every_topic_or_cache() {
        let template = template("{sub}", "{room}");
        let refused = |value| template.grant(&claims(value), None).unwrap_err();
        assert_eq!(refused(json!({"sub": "a", "room": "*"})), GrantRefusal::UnsafeClaim("room".into()));
        assert_eq!(refused(json!({"sub": "a", "room": "room-*"})), GrantRefusal::UnsafeClaim("room".into()));
        assert_eq!(refused(json!({"sub": "a", "room": ""})), GrantRefusal::UnsafeClaim("room".into()));
        assert_eq!(refused(json!({"sub": "a", "room": "r\u{7}"})), GrantRefusal::UnsafeClaim("room".into()));
        let granted = template.grant(&claims(json!({"sub": "a", "room": "room-1"})), None).unwrap();
        assert!(granted.permissions[0].allows_publish("chat", "room-1"));
        assert!(!granted.permissions[0].allows_publish("chat", "room-2"));
    }

    #[test]
    fn a_star_written_in_the_settings_still_means_every_topic() {
        let granted = template("{sub}", "*").grant(&claims(json!({"sub": "a"})), None).unwrap();
        assert!(granted.permissions[0].allows_publish("chat", "anything"));
    }
}
