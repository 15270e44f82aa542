//! `[tokens]`: who may get a Momento token, with which `token_id`, which permissions, and how
//! often. Checked when the configuration loads; each failure names its key.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::claims::ClaimTemplate;
use super::limit::RateLimit;
use crate::common::{Secret, duration};

/// Momento's longest `token_id`.
pub const MAX_TOKEN_ID_LEN: usize = 64;

/// The longest lifetime the relay asks Momento for.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(24 * 3600);

/// `[tokens]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// How callers prove who they are: a bearer JWT.
    pub jwt: JwtSettings,
    /// The `token_id` embedded in each token: a template over the caller's verified claims,
    /// such as `"{sub}"` or `"{sub}:{name}"`.
    #[serde(default = "default_token_id")]
    pub token_id: String,
    /// How long a vended token lives; a caller may ask for less (`{"expires_in": "5m"}`).
    #[serde(default = "default_expires_in", with = "duration")]
    pub expires_in: Duration,
    /// What each token may do; `cache` and `topic` are templates over the claims.
    pub permissions: Vec<PermissionSettings>,
    /// Tokens one identity may get, such as `"10/min"`; past it, 429 with Retry-After.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Origins browsers may call `/v1/tokens` from (CORS); none: no cross-origin calls.
    #[serde(default)]
    pub cors_origins: Vec<String>,
}

fn default_token_id() -> String {
    "{sub}".to_owned()
}

fn default_expires_in() -> Duration {
    Duration::from_secs(30 * 60)
}

/// `[tokens.jwt]`: exactly one key source, plus the claims every caller's JWT must carry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// A shared secret: callers' JWTs are HS256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hs256_secret: Option<Secret>,
    /// A JWKS URL (Cognito, Auth0, Okta, Firebase...): RS256 or ES256 keys, fetched at start,
    /// cached, and fetched again when a JWT names a key it does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// A JWKS document on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// One RSA or EC public key, PEM, on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
    /// The `iss` every JWT must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The `aud` every JWT must carry (one of its values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "duration")]
    pub leeway: Duration,
    /// How long fetched JWKS keys are used before they are fetched again.
    #[serde(default = "default_jwks_refresh", with = "duration")]
    pub jwks_refresh: Duration,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(3600)
}

/// One permission of a vended token.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionSettings {
    /// What the token may do.
    pub role: Role,
    /// The cache (template over the claims), or `"*"` for every cache.
    pub cache: String,
    /// For topic roles: the topic (template over the claims), or `"*"` for every topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// The roles Momento grants in a disposable token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Publish on the topic.
    PublishOnly,
    /// Subscribe to the topic.
    SubscribeOnly,
    /// Publish and subscribe.
    PublishSubscribe,
    /// Read every item of the cache.
    ReadOnly,
    /// Write every item of the cache.
    WriteOnly,
    /// Read and write every item of the cache.
    ReadWrite,
}

impl Role {
    /// Whether the role is about topics (and so needs `topic`).
    pub fn is_topic_role(self) -> bool {
        matches!(self, Role::PublishOnly | Role::SubscribeOnly | Role::PublishSubscribe)
    }

    /// Whether a holder may publish.
    pub fn may_publish(self) -> bool {
        matches!(self, Role::PublishOnly | Role::PublishSubscribe)
    }

    /// Whether a holder may subscribe.
    pub fn may_subscribe(self) -> bool {
        matches!(self, Role::SubscribeOnly | Role::PublishSubscribe)
    }
}

type Failure = (String, String);

fn fail<T>(key: impl Into<String>, message: impl Into<String>) -> Result<T, Failure> {
    Err((key.into(), message.into()))
}

impl TokenSettings {
    /// Checks what types cannot: one key source, templates that parse, lifetimes Momento
    /// allows, origins that are URLs.
    pub fn check(&self) -> Result<(), Failure> {
        self.jwt.check()?;
        if let Err(message) = ClaimTemplate::parse(&self.token_id) {
            return fail("tokens.token_id", message);
        }
        if self.expires_in < Duration::from_secs(1) || self.expires_in > MAX_EXPIRES_IN {
            return fail("tokens.expires_in", "must be at least 1s and at most 24h");
        }
        if self.permissions.is_empty() {
            return fail("tokens.permissions", "list at least one permission");
        }
        for (index, permission) in self.permissions.iter().enumerate() {
            permission.check(&format!("tokens.permissions[{index}]"))?;
        }
        for (index, origin) in self.cors_origins.iter().enumerate() {
            let parsed = reqwest::Url::parse(origin).ok();
            let is_origin = parsed.as_ref().is_some_and(|url| {
                matches!(url.scheme(), "http" | "https") && url.host().is_some() && url.path() == "/"
            }) && !origin.ends_with('/');
            if !is_origin {
                return fail(
                    format!("tokens.cors_origins[{index}]"),
                    "an origin is a scheme and host with no path, such as \"https://chat.example.com\"",
                );
            }
        }
        Ok(())
    }
}

impl JwtSettings {
    fn check(&self) -> Result<(), Failure> {
        let sources = [
            self.hs256_secret.is_some(),
            self.jwks_url.is_some(),
            self.jwks_file.is_some(),
            self.public_key_file.is_some(),
        ];
        if sources.iter().filter(|&&set| set).count() != 1 {
            return fail(
                "tokens.jwt",
                "set exactly one of hs256_secret, jwks_url, jwks_file and public_key_file",
            );
        }
        if let Some(secret) = &self.hs256_secret
            && secret.expose().len() < 32
        {
            return fail(
                "tokens.jwt.hs256_secret",
                "must be at least 32 bytes: a shorter HS256 key can be guessed offline",
            );
        }
        if let Some(url) = &self.jwks_url {
            match reqwest::Url::parse(url) {
                Ok(parsed) if matches!(parsed.scheme(), "https" | "http") => {}
                _ => return fail("tokens.jwt.jwks_url", "must be an http(s) URL"),
            }
        }
        if self.jwks_url.is_some() && (self.issuer.is_none() || self.audience.is_none()) {
            return fail(
                "tokens.jwt",
                "with jwks_url, set both issuer and audience: an identity provider signs tokens \
                 for every application it serves, and without them the relay would take any of \
                 those",
            );
        }
        if self.issuer.as_deref() == Some("") {
            return fail("tokens.jwt.issuer", "cannot be empty; leave it out to accept any issuer");
        }
        if self.audience.as_deref() == Some("") {
            return fail("tokens.jwt.audience", "cannot be empty; leave it out to accept any audience");
        }
        if self.jwks_refresh < Duration::from_secs(10) {
            return fail("tokens.jwt.jwks_refresh", "must be at least 10s");
        }
        Ok(())
    }
}

impl PermissionSettings {
    fn check(&self, key: &str) -> Result<(), Failure> {
        if let Err(message) = ClaimTemplate::parse(&self.cache) {
            return fail(format!("{key}.cache"), message);
        }
        if self.cache.is_empty() {
            return fail(format!("{key}.cache"), "name a cache, or \"*\" for every cache");
        }
        match (&self.topic, self.role.is_topic_role()) {
            (None, true) => {
                fail(format!("{key}.topic"), "a topic role needs a topic, or \"*\" for every topic")
            }
            (Some(_), false) => fail(
                format!("{key}.topic"),
                "cache roles (read_only, write_only, read_write) cover a whole cache and take no topic",
            ),
            (Some(topic), true) if topic.is_empty() => {
                fail(format!("{key}.topic"), "name a topic, or \"*\" for every topic")
            }
            (Some(topic), true) => {
                ClaimTemplate::parse(topic).map(drop).or_else(|m| fail(format!("{key}.topic"), m))
            }
            (None, false) => Ok(()),
        }
    }
}
