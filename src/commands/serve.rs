//! `topic-relay serve`: load the configuration, start logging, run until stopped.

use std::process::ExitCode;

use crate::config::{ConfigError, LoadedConfig};
use crate::processors::ProcessorRegistry;
use crate::startup::App;
use crate::telemetry;

/// Runs the relay on the configuration loaded before the runtime started.
pub async fn run(loaded: Result<LoadedConfig, ConfigError>) -> anyhow::Result<ExitCode> {
    telemetry::init();
    let loaded = loaded?;
    tracing::info!(config = %loaded.source, backend = loaded.settings.momento.resolved_backend().name(), "configuration loaded");
    for notice in &loaded.notices {
        tracing::warn!("{notice}");
    }
    let app = App::build_loaded(loaded, ProcessorRegistry::new()).await?;
    tracing::info!(
        port = app.port(),
        http_threads = app.http_threads(),
        http_scheduling = app.http_scheduling(),
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "topic-relay is listening"
    );
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}
