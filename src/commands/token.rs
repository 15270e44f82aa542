//! `topic-relay token`: ask a relay's `POST /v1/tokens` for a publisher's token, as a
//! browser or app would, and print the answer.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};

use super::locate;
use crate::cli::{ConfigArgs, TokenArgs};

/// Posts the JWT as the bearer and prints the token (or the whole answer).
pub async fn run(args: TokenArgs, config: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/v1/tokens", locate::base_url(args.url, config)?);
    let body = args.expires_in.map(|expires_in| json!({ "expires_in": expires_in }));
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
    let mut request = client.post(&url).bearer_auth(&args.jwt);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        eprintln!("{status} {answer}");
        return Ok(ExitCode::FAILURE);
    }
    match answer["token"].as_str() {
        Some(token) if args.only_token => say!("{token}")?,
        _ => say!("{}", serde_json::to_string_pretty(&answer)?)?,
    }
    Ok(ExitCode::SUCCESS)
}
