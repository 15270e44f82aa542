//! Reloading the configuration from HTTP (`POST /v1/admin/reload`), and what `/v1/status`
//! shows of the configuration in force. The reload itself is the startup's: this asks for it
//! and waits for its answer, as SIGHUP does.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::AppState;
use super::error::HttpError;

/// The configuration in force, as `/v1/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigVersion {
    /// Where it was read from: a path, or the built-in demo configuration.
    pub source: String,
    /// SHA-256 of the file's text, as `sha256sum` prints it. Values read through `${VAR}` or
    /// `${file:PATH}` are not part of it.
    pub sha256: String,
    /// When it was loaded, in ms since the epoch.
    pub loaded_at_ms: u64,
    /// Reloads applied since the relay started.
    pub reloads: u64,
    /// The last reload refused since the last one applied: when, and why.
    pub last_refused: Option<RefusedReload>,
}

/// A reload that was refused, leaving the configuration in force as it was.
#[derive(Debug, Clone, Serialize)]
pub struct RefusedReload {
    /// When, in ms since the epoch.
    pub at_ms: u64,
    /// Why, as `check-config` says it. It never holds a secret.
    pub error: String,
}

/// The configuration in force, shared by the reload that changes it and the status route.
pub type LiveConfigVersion = Arc<ArcSwap<ConfigVersion>>;

/// What a reload that was applied changed.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// The configuration now in force.
    pub config: ConfigVersion,
    /// Subscribed topics that started, as `subscription/topic`.
    pub topics_started: Vec<String>,
    /// Subscribed topics that stopped, as `subscription/topic`.
    pub topics_stopped: Vec<String>,
}

/// The answer to a reload: what it changed, or why it was refused.
pub type ReloadAnswer = Result<ReloadReport, String>;

/// Where reload requests go: the relay's reload loop, which answers each in turn.
#[derive(Clone)]
pub struct ReloadRequests(mpsc::Sender<oneshot::Sender<ReloadAnswer>>);

/// What the reload loop reads requests from.
pub type ReloadInbox = mpsc::Receiver<oneshot::Sender<ReloadAnswer>>;

impl ReloadRequests {
    /// A pair of ends: requests are sent on the first and read from the second.
    pub fn new() -> (Self, ReloadInbox) {
        let (sender, inbox) = mpsc::channel(4);
        (ReloadRequests(sender), inbox)
    }

    /// Asks for a reload and waits for its answer; `None` when the relay is stopping.
    pub async fn reload(&self) -> Option<ReloadAnswer> {
        let (answer, answered) = oneshot::channel();
        self.0.send(answer).await.ok()?;
        answered.await.ok()
    }
}

/// `POST /v1/admin/reload`: reads the configuration file again and applies it, as SIGHUP
/// does. 200 with what changed, or 422 `config_refused` with why, the running configuration
/// left as it was.
pub async fn reload(State(state): State<AppState>) -> Result<Json<ReloadReport>, HttpError> {
    match state.reload_requests.reload().await {
        Some(Ok(report)) => Ok(Json(report)),
        Some(Err(reason)) => Err(HttpError::ConfigRefused(reason)),
        None => Err(HttpError::Overloaded),
    }
}
