//! `drop`: ends the pipeline here; the event counts as handled.

use std::borrow::Cow;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::event::Message;
use crate::pipeline::{Flow, Processor, StepContext, StepError};

/// `{ drop = { reason = "muted topic" } }`; the reason shows in logs and in the response.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {
    /// Why, for logs. Defaults to "dropped by route".
    #[serde(default)]
    pub reason: Option<String>,
}

/// Drops every message.
pub struct DropMessage {
    reason: Cow<'static, str>,
}

impl DropMessage {
    /// Builds the step from its options.
    pub fn build(config: &DropConfig) -> Self {
        DropMessage { reason: config.reason.clone().map_or(Cow::Borrowed("dropped by route"), Cow::Owned) }
    }
}

#[async_trait]
impl Processor for DropMessage {
    async fn process(&self, _: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        Ok(Flow::Drop(self.reason.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::test_support::run_step;

    #[tokio::test]
    async fn every_message_is_dropped_with_the_configured_reason() {
        let step = DropMessage::build(&DropConfig { reason: Some("muted".into()) });
        let (flow, _) = run_step(&step, Message::new("c", "t", "x")).await;
        assert_eq!(flow.unwrap(), Flow::Drop("muted".into()));
    }
}
