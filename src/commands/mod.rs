//! What each subcommand does.

/// Writes a line to stdout like `println!`, but returns a [`StdoutError`] instead of
/// panicking when stdout is closed, as when the output is piped to `head`.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::commands::StdoutError)
    }};
}

mod admin;
mod cache;
mod check_config;
mod healthcheck;
mod jwt;
mod locate;
mod publish;
mod reload;
mod send;
mod serve;
mod sign;
mod spool;
mod token;

use std::io;
use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the command line's choice and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let config = &cli.config;
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve::run(config).await,
        Command::CheckConfig => check_config::run(config),
        Command::Sign(args) => sign::run(args),
        Command::Send(args) => send::run(args, config).await,
        Command::Publish(args) => publish::run(args, config).await,
        Command::Token(args) => token::run(args, config).await,
        Command::Jwt(args) => jwt::run(args),
        Command::Cache(args) => cache::run(args, config).await,
        Command::Healthcheck(args) => healthcheck::run(args, config).await,
        Command::Spool(args) => spool::run(args, config).await,
        Command::Reload(args) => reload::run(args, config).await,
    };
    match result {
        Ok(code) => code,
        // The reader has all it wanted, as `topic-relay spool dead-letters | head` does.
        Err(error)
            if error
                .downcast_ref::<StdoutError>()
                .is_some_and(|StdoutError(error)| error.kind() == io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A command's output could not be written to stdout.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to stdout: {0}")]
pub struct StdoutError(pub io::Error);
