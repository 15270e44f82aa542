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
use std::num::NonZeroUsize;
use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::{self, ConfigError, LoadedConfig};

/// A command line about to run. `serve` has its configuration loaded already, before the
/// async runtime starts, because `server.worker_threads` sizes that runtime.
pub struct Prepared {
    cli: Cli,
    serving: Option<Result<LoadedConfig, ConfigError>>,
}

impl Prepared {
    /// Reads what the command needs before the runtime starts.
    pub fn new(cli: Cli) -> Self {
        let serving = matches!(cli.command, None | Some(Command::Serve))
            .then(|| config::load(cli.config.config.as_deref()));
        Prepared { cli, serving }
    }

    /// The runtime's worker threads: for `serve`, `server.worker_threads` or one per CPU; for
    /// the other commands, and a configuration that did not load, the runtime's default.
    pub fn worker_threads(&self) -> Option<NonZeroUsize> {
        match &self.serving {
            Some(Ok(loaded)) => Some(loaded.settings.server.worker_threads()),
            _ => None,
        }
    }
}

/// Runs the command line's choice and returns the process exit code.
pub async fn run(prepared: Prepared) -> ExitCode {
    let Prepared { cli, serving } = prepared;
    let config = &cli.config;
    let result = match (cli.command.unwrap_or(Command::Serve), serving) {
        (Command::Serve, serving) => {
            serve::run(serving.unwrap_or_else(|| config::load(config.config.as_deref()))).await
        }
        (Command::CheckConfig, _) => check_config::run(config),
        (Command::Sign(args), _) => sign::run(args),
        (Command::Send(args), _) => send::run(args, config).await,
        (Command::Publish(args), _) => publish::run(args, config).await,
        (Command::Token(args), _) => token::run(args, config).await,
        (Command::Jwt(args), _) => jwt::run(args),
        (Command::Cache(args), _) => cache::run(args, config).await,
        (Command::Healthcheck(args), _) => healthcheck::run(args, config).await,
        (Command::Spool(args), _) => spool::run(args, config).await,
        (Command::Reload(args), _) => reload::run(args, config).await,
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
