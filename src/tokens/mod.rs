//! Token vending, the first part of Momento's identity pattern: `POST /v1/tokens` checks the
//! caller's JWT, then vends a short-lived token whose `token_id` and permissions come from
//! the caller's claims. Momento stamps that `token_id` on everything the holder publishes,
//! so the routes can trust it. Nothing here is on the path of events.
//!
//! - `settings`: `[tokens]`, and its checks.
//! - `caller`: verifying the caller's JWT (HS256 secret, JWKS URL or file, PEM key).
//! - `jwks`: the keys of a JWKS URL, refreshed in the background.
//! - `claims`: templates over the verified claims.
//! - `grant`: what the claims earn: `token_id`, permissions, lifetime.
//! - `limit`: the per-identity rate limit.
//! - `issuer`: Momento's `AuthClient`, or the embedded backend's `local` tokens.

mod caller;
mod claims;
mod grant;
mod issuer;
mod jwks;
mod limit;
mod local;
mod metrics;
mod settings;

use std::time::Duration;

pub use caller::{CallerCheck, CallerRefusal, Claims};
pub use claims::ClaimTemplate;
pub use grant::{Grant, GrantRefusal, GrantTemplate, Permission};
pub use issuer::{IssueError, IssuedToken, Issuer};
pub use limit::{RateLimit, VendLimiter};
pub use local::{BusRefusal, LocalTokens};
pub use metrics::{REFUSAL_REASONS, TokenMetrics};
pub use settings::{JwtSettings, MAX_EXPIRES_IN, MAX_TOKEN_ID_LEN, PermissionSettings, Role, TokenSettings};

/// What `/v1/tokens` answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Vended {
    /// The token to publish (and subscribe) with.
    pub token: String,
    /// Where to use it: the Momento endpoint, or `"embedded"`.
    pub endpoint: String,
    /// The id Momento stamps on everything published with the token.
    pub token_id: String,
    /// When the token expires, in seconds since the epoch.
    pub expires_at: u64,
    /// What the token may do.
    pub permissions: Vec<Permission>,
}

/// Why no token was vended.
#[derive(Debug, thiserror::Error)]
pub enum VendRefusal {
    /// The caller's JWT was not taken.
    #[error(transparent)]
    Caller(#[from] CallerRefusal),
    /// The claims do not make a token.
    #[error(transparent)]
    Grant(#[from] GrantRefusal),
    /// Past the identity's rate; it may try again after this long.
    #[error("too many tokens for this identity")]
    RateLimited(Duration),
    /// The issuer failed.
    #[error(transparent)]
    Issue(#[from] IssueError),
}

impl VendRefusal {
    /// The label of the refusal in metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            VendRefusal::Caller(refusal) => refusal.reason(),
            VendRefusal::Grant(refusal) => refusal.reason(),
            VendRefusal::RateLimited(_) => "rate_limited",
            VendRefusal::Issue(IssueError::Unavailable(_)) => "momento_unavailable",
            VendRefusal::Issue(IssueError::Refused(_)) => "momento_refused",
        }
    }
}

/// Checks callers and vends their tokens.
pub struct TokenVendor {
    caller: CallerCheck,
    grants: GrantTemplate,
    limiter: Option<VendLimiter>,
    issuer: Issuer,
    metrics: TokenMetrics,
}

impl TokenVendor {
    /// Loads the caller's keys (fetching a JWKS URL) and parses the templates.
    pub async fn new(
        settings: &TokenSettings,
        issuer: Issuer,
        metrics: TokenMetrics,
    ) -> anyhow::Result<Self> {
        let grants =
            GrantTemplate::new(settings).map_err(|message| anyhow::anyhow!("`tokens`: {message}"))?;
        Ok(TokenVendor {
            caller: CallerCheck::new(&settings.jwt).await?,
            grants,
            limiter: settings.rate_limit.map(VendLimiter::new),
            issuer,
            metrics,
        })
    }

    /// Vends a token to the bearer of `bearer`, for at most `asked`; counts the outcome.
    pub async fn vend(&self, bearer: Option<&str>, asked: Option<Duration>) -> Result<Vended, VendRefusal> {
        let result = self.try_vend(bearer, asked).await;
        match &result {
            Ok(_) => self.metrics.vended(),
            Err(refusal) => {
                self.metrics.refused(refusal.reason());
                // Callers' mistakes are counted, not logged; Momento's refusals need an operator.
                if let VendRefusal::Issue(error) = refusal {
                    tracing::error!(%error, "cannot vend a token");
                }
            }
        }
        result
    }

    async fn try_vend(&self, bearer: Option<&str>, asked: Option<Duration>) -> Result<Vended, VendRefusal> {
        let claims = self.caller.verify(bearer).await?;
        let grant = self.grants.grant(&claims, asked)?;
        if let Some(limiter) = &self.limiter {
            limiter.check(&grant.token_id).map_err(VendRefusal::RateLimited)?;
        }
        let issued = self.issuer.issue(&grant).await?;
        Ok(Vended {
            token: issued.token,
            endpoint: issued.endpoint,
            token_id: grant.token_id,
            expires_at: issued.expires_at,
            permissions: grant.permissions,
        })
    }

    /// Forgets rate-limit state of identities that are idle again, every minute, for as long
    /// as the vendor lives.
    pub fn sweep_in_background(self: &std::sync::Arc<Self>) {
        let vendor = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                let Some(vendor) = vendor.upgrade() else { return };
                if let Some(limiter) = &vendor.limiter {
                    limiter.forget_idle();
                }
            }
        });
    }
}
