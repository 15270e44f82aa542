//! `topic-relay cache set|get`: write or read a cache item through a running relay's admin
//! API, such as the user records the identity pattern looks up.

use std::process::ExitCode;

use anyhow::Context;
use reqwest::Url;

use super::locate;
use crate::cli::{CacheArgs, CacheCommand, ConfigArgs};

/// Runs one cache subcommand against the relay at `--url`, else the configured one.
pub async fn run(args: CacheArgs, config: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let (base, token) = locate::admin_target(args.url, args.token, config)?;
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
    let (cache, key) = match &args.command {
        CacheCommand::Set { cache, key, .. } | CacheCommand::Get { cache, key } => (cache, key),
    };
    let mut url = Url::parse(&base).context("--url is not a URL")?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("--url cannot take a path"))?
        .pop_if_empty()
        .extend(["v1", "cache", cache, key]);
    let mut request = match &args.command {
        CacheCommand::Set { value, ttl, .. } => {
            if let Some(ttl) = ttl {
                url.query_pairs_mut().append_pair("ttl", ttl);
            }
            client.put(url).body(value.clone())
        }
        CacheCommand::Get { .. } => client.get(url),
    };
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    match (&args.command, status.is_success()) {
        (CacheCommand::Set { cache, key, .. }, true) => say!("stored {key:?} in {cache:?}")?,
        (CacheCommand::Get { .. }, true) => say!("{body}")?,
        (_, false) => {
            eprintln!("{status} {body}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
