//! The client of a running relay's admin API, for the commands that call it.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

/// A running relay's admin API.
pub struct Admin {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Admin {
    /// The admin API at `base`, with `token` as the bearer.
    pub fn new(base: String, token: Option<String>) -> Self {
        Admin { base, token, client: reqwest::Client::new() }
    }

    /// Calls `path` and returns the JSON answer; an error answer becomes an error saying
    /// what to do about it.
    pub async fn call(&self, method: Method, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request: RequestBuilder = self.client.request(method, &url).timeout(Duration::from_secs(10));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            let detail = body["detail"].as_str().unwrap_or("no detail");
            match status.as_u16() {
                401 => bail!("{status}: {detail} (set --token or TOPIC_RELAY_ADMIN_TOKEN)"),
                404 if body["error"] == "not_found" => {
                    bail!(
                        "{status}: the admin API is off (set [admin] token) or the spool is (delivery.mode = \"off\")"
                    )
                }
                _ => bail!("{status}: {detail}"),
            }
        }
        Ok(body)
    }
}
