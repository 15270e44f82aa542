//! `topic-relay healthcheck`: a probe for images without curl.

use std::process::ExitCode;
use std::time::Duration;

use super::locate::{ADDRESS, ConfiguredRelay};
use crate::cli::{ConfigArgs, HealthcheckArgs};

/// Exits 0 when `--url`, else `/healthz` of the configured relay, answers 200 within 3
/// seconds.
pub async fn run(args: HealthcheckArgs, config: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let url = match args.url {
        Some(url) => url,
        None => format!("{}/healthz", ConfiguredRelay::load(config, ADDRESS)?.base_url()?),
    };
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?;
    match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => Ok(ExitCode::SUCCESS),
        Ok(response) => {
            eprintln!("unhealthy: {url} answered {}", response.status());
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            eprintln!("unhealthy: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}
