//! Who signs the tokens: Momento, through the SDK's `AuthClient`
//! (`GenerateDisposableTokenRequest` with the `token_id`), or, on the embedded backend,
//! the relay itself ([`LocalTokens`]).

use std::sync::Arc;
use std::time::Duration;

use momento::auth::{
    CacheRole, CacheSelector, ExpiresIn, GenerateDisposableTokenRequest, Permission as MomentoPermission,
    Permissions, TopicPermission, TopicRole, TopicSelector,
};
use momento::{AuthClient, CredentialProvider, MomentoErrorCode};

use super::grant::{ALL, Grant, Permission};
use super::local::LocalTokens;
use super::settings::Role;

/// A token, ready for its holder.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// What the holder presents: a Momento disposable token, or a local one.
    pub token: String,
    /// Where the holder sends its calls: the Momento endpoint, or `"embedded"`.
    pub endpoint: String,
    /// When the token expires, in seconds since the epoch.
    pub expires_at: u64,
}

/// Why no token was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// Momento could not be reached, or took too long: worth retrying.
    #[error("Momento is unavailable: {0}")]
    Unavailable(String),
    /// Momento refused, such as an API key that may not vend tokens.
    #[error("Momento refused to vend the token: {0}")]
    Refused(String),
}

/// Signs tokens.
#[derive(Clone)]
pub enum Issuer {
    /// Momento disposable tokens.
    Momento(Box<AuthClient>),
    /// The embedded backend's own.
    Local(Arc<LocalTokens>),
}

/// How long one call to Momento's token service may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

impl Issuer {
    /// Vends through Momento with these credentials.
    pub fn momento(credentials: CredentialProvider) -> anyhow::Result<Issuer> {
        Ok(Issuer::Momento(Box::new(AuthClient::builder().credential_provider(credentials).build()?)))
    }

    /// Issues a token for `grant`.
    pub async fn issue(&self, grant: &Grant) -> Result<IssuedToken, IssueError> {
        match self {
            Issuer::Local(tokens) => {
                let (token, expires_at) =
                    tokens.issue(grant).map_err(|error| IssueError::Refused(error.to_string()))?;
                Ok(IssuedToken { token, endpoint: "embedded".to_owned(), expires_at })
            }
            Issuer::Momento(client) => {
                let scope =
                    Permissions { permissions: grant.permissions.iter().map(momento_permission).collect() };
                let request = GenerateDisposableTokenRequest::new(
                    scope.into(),
                    ExpiresIn::seconds(grant.expires_in.as_secs()),
                )
                .token_id(grant.token_id.clone());
                let response = tokio::time::timeout(CALL_TIMEOUT, client.send_request(request))
                    .await
                    .map_err(|_| IssueError::Unavailable("the call timed out".into()))?
                    .map_err(|error| match error.error_code {
                        MomentoErrorCode::ServerUnavailable
                        | MomentoErrorCode::TimeoutError
                        | MomentoErrorCode::InternalServerError
                        | MomentoErrorCode::LimitExceededError => IssueError::Unavailable(error.message),
                        _ => IssueError::Refused(error.message),
                    })?;
                Ok(IssuedToken {
                    expires_at: response.clone().expires_at().epoch(),
                    endpoint: response.clone().endpoint(),
                    token: response.auth_token(),
                })
            }
        }
    }
}

fn cache_selector(cache: &str) -> CacheSelector {
    if cache == ALL { CacheSelector::AllCaches } else { CacheSelector::CacheName { name: cache.to_owned() } }
}

fn momento_permission(permission: &Permission) -> MomentoPermission {
    let cache = cache_selector(&permission.cache);
    let topic = match permission.topic.as_deref() {
        None | Some(ALL) => TopicSelector::AllTopics,
        Some(name) => TopicSelector::TopicName { name: name.to_owned() },
    };
    let topic_permission = |role| {
        MomentoPermission::TopicPermission(TopicPermission {
            role,
            cache: cache.clone(),
            topic: topic.clone(),
        })
    };
    let cache_permission = |role| {
        MomentoPermission::CachePermission(momento::auth::CachePermission { role, cache: cache.clone() })
    };
    match permission.role {
        Role::PublishOnly => topic_permission(TopicRole::PublishOnly),
        Role::SubscribeOnly => topic_permission(TopicRole::SubscribeOnly),
        Role::PublishSubscribe => topic_permission(TopicRole::PublishSubscribe),
        Role::ReadOnly => cache_permission(CacheRole::ReadOnly),
        Role::WriteOnly => cache_permission(CacheRole::WriteOnly),
        Role::ReadWrite => cache_permission(CacheRole::ReadWrite),
    }
}
