//! `topic-relay spool ...`: look into a running relay's spool and dead letters through its
//! admin API, replay them, purge them.

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::bail;
use reqwest::Method;
use serde_json::Value;

use super::admin::Admin;
use super::{StdoutError, locate};
use crate::cli::{ConfigArgs, SpoolArgs, SpoolCommand};

/// Runs one spool subcommand against the relay at `--url`, else the configured one.
pub async fn run(args: SpoolArgs, config: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let (base, token) = locate::admin_target(args.url, args.token, config)?;
    let admin = Admin::new(base, token);
    match args.command {
        SpoolCommand::Status => print_status(&admin.call(Method::GET, "/v1/status").await?)?,
        SpoolCommand::Pending { limit } => {
            let answer = admin.call(Method::GET, &format!("/v1/admin/spool?limit={limit}")).await?;
            print_pending(&answer)?;
        }
        SpoolCommand::DeadLetters { limit } => {
            let answer = admin.call(Method::GET, &format!("/v1/admin/dead-letters?limit={limit}")).await?;
            print_dead_letters(&answer)?;
        }
        SpoolCommand::Show { id } => {
            let answer = admin.call(Method::GET, &format!("/v1/admin/dead-letters/{id}")).await?;
            say!("{}", serde_json::to_string_pretty(&answer)?)?;
        }
        SpoolCommand::Replay { id, all } => {
            let path = match (id, all) {
                (Some(id), false) => format!("/v1/admin/dead-letters/{id}/replay"),
                (None, true) => "/v1/admin/dead-letters/replay".to_owned(),
                _ => bail!("give a dead letter's id, or --all"),
            };
            let answer = admin.call(Method::POST, &path).await?;
            let replayed = answer["replayed"].as_array().map_or(0, Vec::len);
            say!("replayed {replayed} dead letter(s); they are due now")?;
        }
        SpoolCommand::Purge { id, all } => {
            let path = match (id, all) {
                (Some(id), false) => format!("/v1/admin/dead-letters/{id}"),
                (None, true) => "/v1/admin/dead-letters".to_owned(),
                _ => bail!("give a dead letter's id, or --all"),
            };
            let answer = admin.call(Method::DELETE, &path).await?;
            say!("purged {} dead letter(s)", answer["purged"])?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(status: &Value) -> Result<(), StdoutError> {
    let delivery = &status["delivery"];
    say!("backend:      {}", status["backend"].as_str().unwrap_or("?"))?;
    say!("ready:        {}", status["ready"])?;
    say!("mode:         {}", delivery["mode"].as_str().unwrap_or("?"))?;
    say!("spooled:      {}", delivery["spooled"])?;
    say!("dead letters: {}", delivery["dead_letters"])?;
    for stream in status["subscriptions"].as_array().into_iter().flatten() {
        let owner = if stream["owned"] == true { "owned by this replica" } else { "not owned here" };
        say!(
            "stream:       {}/{}: {}, {owner}{}",
            stream["subscription"].as_str().unwrap_or("?"),
            stream["topic"].as_str().unwrap_or("?"),
            stream["state"].as_str().unwrap_or("?"),
            stream["last_error"].as_str().map(|error| format!(" ({error})")).unwrap_or_default()
        )?;
    }
    Ok(())
}

fn print_pending(answer: &Value) -> Result<(), StdoutError> {
    say!(
        "{:<8} {:<20} {:>9} {:>8}  {:<20}  LAST ERROR",
        "ID",
        "ROUTE",
        "NEXT STEP",
        "ATTEMPTS",
        "DUE (UTC)"
    )?;
    for event in answer["events"].as_array().into_iter().flatten() {
        say!(
            "{:<8} {:<20} {:>9} {:>8}  {:<20}  {}",
            event["id"],
            event["route"].as_str().unwrap_or("?"),
            event["next_step"],
            event["attempts"],
            time(&event["due_ms"]),
            event["last_error"].as_str().unwrap_or("")
        )?;
    }
    Ok(())
}

fn print_dead_letters(answer: &Value) -> Result<(), StdoutError> {
    say!("{:<8} {:<20} {:>8}  {:<20}  REASON", "ID", "ROUTE", "ATTEMPTS", "DEAD SINCE (UTC)")?;
    for letter in answer["dead_letters"].as_array().into_iter().flatten() {
        say!(
            "{:<8} {:<20} {:>8}  {:<20}  {}",
            letter["id"],
            letter["event"]["route"].as_str().unwrap_or("?"),
            letter["event"]["attempts"],
            time(&letter["dead_at_ms"]),
            letter["reason"].as_str().unwrap_or("")
        )?;
    }
    Ok(())
}

fn time(ms: &Value) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.as_u64().unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}
