//! `topic-relay serve`: load the configuration, start logging, run until stopped.

use std::process::ExitCode;

use crate::cli::ConfigArgs;
use crate::config;
use crate::processors::ProcessorRegistry;
use crate::startup::App;
use crate::telemetry;

/// Runs the relay.
pub async fn run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    telemetry::init();
    let loaded = config::load(args.config.as_deref())?;
    tracing::info!(config = %loaded.source, backend = loaded.settings.momento.resolved_backend().name(), "configuration loaded");
    for notice in &loaded.notices {
        tracing::warn!("{notice}");
    }
    let app = App::build_loaded(loaded, ProcessorRegistry::new()).await?;
    tracing::info!(
        port = app.port(),
        http_threads = app.http_threads(),
        http_scheduling = app.http_scheduling(),
        // The runtime that carries topic streams, Momento calls and background work; its
        // size is `TOKIO_WORKER_THREADS`, or one per CPU.
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "topic-relay is listening"
    );
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}
