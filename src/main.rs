//! The `topic-relay` binary: parse the command line and run the command.

use std::process::ExitCode;

use clap::Parser;
use topic_relay::{cli::Cli, commands};

// Every event allocates a little (its message, the answer); mimalloc's thread-local free
// lists make that several times cheaper than glibc's malloc under a multi-threaded runtime.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    commands::run(Cli::parse()).await
}
