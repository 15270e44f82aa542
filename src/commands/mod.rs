//! What each subcommand does.

mod cache;
mod check_config;
mod healthcheck;
mod jwt;
mod publish;
mod send;
mod serve;
mod sign;
mod spool;
mod token;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the command line's choice and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve::run(cli.config).await,
        Command::CheckConfig => check_config::run(cli.config),
        Command::Sign(args) => sign::run(args),
        Command::Send(args) => send::run(args).await,
        Command::Publish(args) => publish::run(args).await,
        Command::Token(args) => token::run(args).await,
        Command::Jwt(args) => jwt::run(args),
        Command::Cache(args) => cache::run(args).await,
        Command::Healthcheck(args) => healthcheck::run(args).await,
        Command::Spool(args) => spool::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
