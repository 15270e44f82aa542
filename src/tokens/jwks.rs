//! The keys of an identity provider's JWKS URL: fetched at start, fetched again every
//! `jwks_refresh` in the background, and at once (at most once a second) when a caller's JWT
//! names a key the relay does not hold. Verifications read the keys held without a lock and
//! never wait for an ordinary refresh; only a caller whose key is unknown waits, for the one
//! fetch in flight. A fetch follows no redirect and reads at most [`MAX_JWKS_BYTES`].

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;

use super::caller::{Key, public_keys};

/// The largest JWKS document read; identity providers publish a few keys, a few KiB.
pub const MAX_JWKS_BYTES: usize = 256 << 10;

/// Keys with an unknown `kid` are fetched again at most this often, so that forged tokens
/// cannot make the relay hammer the identity provider.
const MIN_REFETCH: Duration = Duration::from_secs(1);

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The keys of one JWKS URL.
pub struct JwksKeys {
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
    client: reqwest::Client,
    keys: ArcSwap<Vec<Key>>,
    /// When the last fetch began and whether it succeeded; held for the length of a fetch,
    /// so that fetches go one at a time and a caller arriving during one waits for its result
    /// instead of starting another.
    fetching: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl JwksKeys {
    /// Fetches `url` now (a failure is logged, and retried when a caller arrives), then
    /// again every `refresh` for as long as the keys are in use.
    pub async fn start(url: &str, refresh: Duration) -> anyhow::Result<JwksKeys> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot make the HTTP client that fetches tokens.jwt.jwks_url")?;
        let shared = Arc::new(Shared {
            url: url.to_owned(),
            client,
            keys: ArcSwap::from_pointee(Vec::new()),
            fetching: tokio::sync::Mutex::new(None),
        });
        if shared.fetch_unless_recent(Duration::ZERO).await.is_err() {
            tracing::error!("cannot fetch the JWKS of tokens.jwt.jwks_url; retrying when a caller arrives");
        }
        refresh_in_background(Arc::downgrade(&shared), refresh);
        Ok(JwksKeys { shared })
    }

    /// The keys held now.
    pub fn current(&self) -> Arc<Vec<Key>> {
        self.shared.keys.load_full()
    }

    /// Fetches the keys again unless a fetch began less than a second ago; waits for a
    /// fetch already in flight rather than starting another. The error is the fetch's.
    pub async fn refetch(&self) -> anyhow::Result<()> {
        self.shared.fetch_unless_recent(MIN_REFETCH).await
    }
}

impl Shared {
    async fn fetch_unless_recent(&self, recent: Duration) -> anyhow::Result<()> {
        let mut last = self.fetching.lock().await;
        if let Some((began, succeeded)) = *last
            && began.elapsed() < recent
        {
            return if succeeded { Ok(()) } else { Err(anyhow::anyhow!("the last JWKS fetch failed")) };
        }
        let began = Instant::now();
        let fetched = self.fetch().await;
        *last = Some((began, fetched.is_ok()));
        match fetched {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "JWKS fetched");
                self.keys.store(Arc::new(keys));
                Ok(())
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot fetch the JWKS; keeping the keys held");
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<Vec<Key>> {
        let mut response = self.client.get(&self.url).send().await?.error_for_status()?;
        if response.status().is_redirection() {
            anyhow::bail!("the JWKS URL answered a redirect, which is not followed");
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                anyhow::bail!("the JWKS is larger than {MAX_JWKS_BYTES} bytes");
            }
        }
        let set: JwkSet = serde_json::from_slice(&body).context("the JWKS URL did not answer a JWKS")?;
        Ok(public_keys(&set))
    }
}

/// Fetches the keys every `refresh`, until they are no longer in use.
fn refresh_in_background(shared: Weak<Shared>, refresh: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(refresh).await;
            let Some(shared) = shared.upgrade() else { return };
            let _ = shared.fetch_unless_recent(MIN_REFETCH).await;
        }
    });
}
