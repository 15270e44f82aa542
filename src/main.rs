//! The `topic-relay` binary: parse the command line and run the command.

use std::process::ExitCode;

use clap::Parser;
use topic_relay::{cli::Cli, commands};

#[tokio::main]
async fn main() -> ExitCode {
    commands::run(Cli::parse()).await
}
