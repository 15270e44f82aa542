//! Liveness and readiness, shared by `/healthz`, `/readyz` and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::Backend;
use crate::sources::subscription::ListenerReports;

/// Why the relay is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// Shutdown has begun.
    Draining,
    /// The backend has not answered yet, or keeps failing.
    BackendNotReady,
    /// A topic cannot be subscribed to, or its lease cannot be taken.
    SubscriptionFailing,
}

impl NotReady {
    /// The reason as shown by `/readyz`.
    pub fn code(self) -> &'static str {
        match self {
            NotReady::Draining => "draining",
            NotReady::BackendNotReady => "backend_not_ready",
            NotReady::SubscriptionFailing => "subscription_failing",
        }
    }
}

/// The relay's health.
pub struct Health {
    draining: AtomicBool,
    backend: Arc<dyn Backend>,
    listeners: ListenerReports,
}

impl Health {
    /// Healthy and not draining.
    pub fn new(backend: Arc<dyn Backend>, listeners: ListenerReports) -> Self {
        Health { draining: AtomicBool::new(false), backend, listeners }
    }

    /// Marks the start of shutdown: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the relay should get traffic.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if self.draining.load(Ordering::Acquire) {
            Err(NotReady::Draining)
        } else if !self.backend.is_ready() {
            Err(NotReady::BackendNotReady)
        } else if self.listeners.any_failing() {
            Err(NotReady::SubscriptionFailing)
        } else {
            Ok(())
        }
    }
}
