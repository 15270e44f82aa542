//! `topic_relay_tokens_vended_total` and `topic_relay_tokens_refused_total{reason}`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::Metrics;

/// Every reason a token is refused, as labelled in metrics.
pub const REFUSAL_REASONS: &[&str] = &[
    "missing_token",
    "invalid_token",
    "expired_token",
    "unknown_key",
    "wrong_issuer",
    "wrong_audience",
    "keys_unavailable",
    "missing_claim",
    "empty_token_id",
    "token_id_too_long",
    "empty_scope",
    "token_id_not_trimmed",
    "unsafe_claim",
    "rate_limited",
    "momento_unavailable",
    "momento_refused",
];

/// The token counters.
#[derive(Clone, Default)]
pub struct TokenMetrics {
    vended: Counter,
    refused: Family<Vec<(&'static str, String)>, Counter>,
}

impl TokenMetrics {
    /// Registers the counters, with every refusal reason at zero.
    pub fn register(metrics: &mut Metrics) -> Self {
        let this = TokenMetrics::default();
        for reason in REFUSAL_REASONS {
            let _ = this.refused.get_or_create(&vec![("reason", (*reason).to_owned())]);
        }
        metrics.register("topic_relay_tokens_vended", "Tokens vended by /v1/tokens", this.vended.clone());
        metrics.register(
            "topic_relay_tokens_refused",
            "Token requests refused, by reason",
            this.refused.clone(),
        );
        this
    }

    /// Counts a vended token.
    pub fn vended(&self) {
        self.vended.inc();
    }

    /// Counts a refusal.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&vec![("reason", reason.to_owned())]).inc();
    }
}
