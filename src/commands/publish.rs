//! `topic-relay publish`: put a message on a running relay's embedded bus, as a Momento client
//! publishes on a topic, to try subscriptions with no account.

use std::process::ExitCode;

use anyhow::Context;

use super::locate;
use crate::cli::{ConfigArgs, PublishArgs};

/// Posts the message to `/v1/publish/{cache}/{topic}` and prints the answer.
pub async fn run(args: PublishArgs, config: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let base = locate::base_url(args.url, config)?;
    let mut url = reqwest::Url::parse(&base).context("--url is not a URL")?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("--url cannot take a path"))?
        .pop_if_empty()
        .extend(["v1", "publish", &args.message.cache, &args.message.topic]);
    if !args.message.token_id.is_empty() {
        url.query_pairs_mut().append_pair("token_id", &args.message.token_id);
    }
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
    let mut request = client.post(url).body(args.message.text);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    say!("{status} {}", response.text().await.unwrap_or_default())?;
    Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
