//! `topic-relay reload`: has a running relay read its configuration file again, through its
//! admin API (`POST /v1/admin/reload`), as SIGHUP does, and says what changed or why the
//! file was refused.

use std::process::ExitCode;

use reqwest::Method;

use super::admin::Admin;
use super::locate;
use crate::cli::{ConfigArgs, ReloadArgs};

/// Asks the relay at `--url` (else the configured one) to reload.
pub async fn run(args: ReloadArgs, config: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let (base, token) = locate::admin_target(args.url, args.token, config)?;
    let answer = Admin::new(base, token).call(Method::POST, "/v1/admin/reload").await?;
    let config = &answer["config"];
    say!(
        "reloaded {} (sha256 {}); reload {} since start",
        config["source"].as_str().unwrap_or("?"),
        config["sha256"].as_str().unwrap_or("?"),
        config["reloads"]
    )?;
    for (change, key) in [("started", "topics_started"), ("stopped", "topics_stopped")] {
        for topic in answer[key].as_array().into_iter().flatten() {
            say!("{change}: {}", topic.as_str().unwrap_or("?"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
