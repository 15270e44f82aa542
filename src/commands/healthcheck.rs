//! `topic-relay healthcheck`: a probe for images without curl.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::HealthcheckArgs;

/// Exits 0 when the URL answers 200 within 3 seconds.
pub async fn run(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?;
    match client.get(&args.url).send().await {
        Ok(response) if response.status().is_success() => Ok(ExitCode::SUCCESS),
        Ok(response) => {
            eprintln!("unhealthy: {} answered {}", args.url, response.status());
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            eprintln!("unhealthy: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}
