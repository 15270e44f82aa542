//! The `topic-relay` binary: parse the command line and run the command.

use std::process::ExitCode;

use clap::Parser;
use topic_relay::{cli::Cli, commands};

// Every event allocates a little (its message, the answer); mimalloc's thread-local free
// lists make that several times cheaper than glibc's malloc under a multi-threaded runtime.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // mimalloc asks for transparent huge pages. Each first touch of one zeroes 2 MiB at once,
    // and in a microVM (Firecracker, as under Fargate and Lambda) that stalls the request that
    // touched it for milliseconds, as when the replay check's maps grow. Small pages spread
    // the same work thinly, and keep the resident set to what is used. Huge pages buy no speed
    // back: at peak load, with the replay check's maps growing to 700,000 signatures, the relay
    // with them did 0.99× the events per second, with 1.34× the peak memory and 2.7× the p99
    // (medians of eight alternating rounds). Failing to turn them off (another OS, an old
    // kernel) only leaves those stalls in place.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let prepared = commands::Prepared::new(Cli::parse());
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = prepared.worker_threads() {
        runtime.worker_threads(threads.get());
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(commands::run(prepared)),
        Err(error) => {
            eprintln!("topic-relay: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}
