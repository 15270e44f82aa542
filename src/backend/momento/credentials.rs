//! Turning `[momento]` settings into the SDK's `CredentialProvider`. Errors never contain
//! the key.

use momento::CredentialProvider;

use crate::backend::MomentoSettings;

/// Why the API key or endpoint settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("`momento.{key}`: {reason}")]
pub struct CredentialError {
    key: &'static str,
    reason: String,
}

/// Builds the credentials: a v2 API key with `endpoint`, or a legacy v1 key (which carries
/// its own endpoint); then `endpoint_override`, over TLS or not.
pub fn credential_provider(settings: &MomentoSettings) -> Result<CredentialProvider, CredentialError> {
    let key = settings
        .api_key
        .as_ref()
        .filter(|key| !key.is_empty())
        .ok_or_else(|| CredentialError { key: "api_key", reason: "no API key is configured".into() })?
        .expose();
    // With an override, every call goes there; a v2 key then needs no separate endpoint.
    let endpoint =
        settings.endpoint.as_deref().or_else(|| settings.endpoint_override.as_deref().map(host_of));
    let provider = match endpoint {
        Some(endpoint) => CredentialProvider::from_api_key_v2(key, endpoint).or_else(|_| legacy(key)),
        None => legacy(key),
    }
    .map_err(|_| CredentialError {
        key: "api_key",
        reason: "this is not a valid Momento API key: a v2 key (a JWT) needs momento.endpoint \
                 alongside; a legacy v1 key carries its own endpoint"
            .into(),
    })?;
    Ok(match settings.endpoint_override.as_deref() {
        Some(url) if settings.tls => provider.full_endpoint_override(url),
        Some(url) => provider.insecure_endpoint_override(url),
        None => provider,
    })
}

/// Where topic subscriptions go: the override when there is one, else the cache endpoint
/// of the credentials' cell (`https://cache.<endpoint>`).
pub fn pubsub_uri(settings: &MomentoSettings, provider: &CredentialProvider) -> String {
    match settings.endpoint_override.as_deref() {
        Some(url) => url.to_owned(),
        None => format!("https://{}", provider.valkey_hostname()),
    }
}

/// `http://127.0.0.1:9090/x` -> `127.0.0.1`
fn host_of(url: &str) -> &str {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = without_scheme.split('/').next().unwrap_or_default();
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

#[allow(deprecated)] // The SDK keeps legacy v1 keys behind a deprecated constructor; users still hold them.
fn legacy(key: &str) -> momento::MomentoResult<CredentialProvider> {
    CredentialProvider::from_string(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::Secret;

    /// A key whose payload is `{"t":"g"}`, the shape the SDK accepts as a v2 key.
    const V2_KEY: &str = "eyJhbGciOiJIUzUxMiJ9.eyJ0IjoiZyJ9.c2lnbmF0dXJl";

    fn settings(key: &str, endpoint: Option<&str>) -> MomentoSettings {
        MomentoSettings {
            api_key: Some(Secret::read(key)),
            endpoint: endpoint.map(str::to_owned),
            ..MomentoSettings::default()
        }
    }

    #[test]
    fn a_v2_key_with_an_endpoint_is_accepted() {
        assert!(credential_provider(&settings(V2_KEY, Some("cell-1.example.com"))).is_ok());
    }

    #[test]
    fn a_v2_key_without_an_endpoint_is_refused_with_a_hint_and_without_the_key() {
        let error = credential_provider(&settings(V2_KEY, None)).unwrap_err().to_string();
        assert!(error.contains("momento.api_key") && error.contains("needs momento.endpoint"), "{error}");
        assert!(!error.contains(V2_KEY));
    }

    #[test]
    fn a_legacy_v1_key_carries_its_own_endpoint() {
        // The SDK's own v1 test key: base64 of {"endpoint": "momento_endpoint", "api_key": "..."}.
        const V1_KEY: &str = "eyJlbmRwb2ludCI6Im1vbWVudG9fZW5kcG9pbnQiLCJhcGlfa2V5IjoiZXlKaGJHY2lPaUpJVXpJMU5pSjkuZXlKemRXSWlPaUowWlhOMElITjFZbXBsWTNRaUxDSjJaWElpT2pFc0luQWlPaUlpZlEuaGcyd01iV2Utd2VzUVZ0QTd3dUpjUlVMalJwaFhMUXdRVFZZZlFMM0w3YyJ9Cg==";
        let provider = credential_provider(&settings(V1_KEY, None)).expect("a v1 key needs no endpoint");
        assert!(format!("{provider:?}").contains("momento_endpoint"));
        assert!(!format!("{provider:?}").contains("eyJhbGci"), "the SDK redacts the key in Debug");
    }

    #[test]
    fn a_v2_key_with_only_an_endpoint_override_is_accepted() {
        let mut settings = settings(V2_KEY, None);
        settings.endpoint_override = Some("http://127.0.0.1:9090".into());
        settings.tls = false;
        assert!(credential_provider(&settings).is_ok());
        assert_eq!(host_of("https://relay.internal:443/x"), "relay.internal");
    }

    #[test]
    fn a_malformed_key_is_refused_without_echoing_it() {
        let error =
            credential_provider(&settings("not-a-key-at-all", Some("e.com"))).unwrap_err().to_string();
        assert!(!error.contains("not-a-key-at-all"), "{error}");
    }
}
