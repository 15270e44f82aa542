//! `reject`: refuses the event (403 `rejected`), such as anonymous publishers on a room that
//! needs a token id. `{ reject = { reason = "sign in to post here" } }`

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::event::Message;
use crate::pipeline::{Flow, Processor, StepContext, StepError};

/// Options of `reject`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RejectConfig {
    /// Why, for logs and the answer. Defaults to "refused by route".
    #[serde(default)]
    pub reason: Option<String>,
}

/// Refuses every message.
pub struct Reject {
    reason: String,
}

impl Reject {
    /// Builds the step from its options.
    pub fn build(config: &RejectConfig) -> Self {
        Reject { reason: config.reason.clone().unwrap_or_else(|| "refused by route".into()) }
    }
}

#[async_trait]
impl Processor for Reject {
    async fn process(&self, _: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        Err(StepError::Rejected(self.reason.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::test_support::run_step;

    #[tokio::test]
    async fn every_message_is_refused_with_the_reason() {
        let step = Reject::build(&RejectConfig { reason: Some("sign in".into()) });
        let (flow, _) = run_step(&step, Message::new("c", "t", "x")).await;
        assert!(matches!(flow, Err(StepError::Rejected(reason)) if reason == "sign in"));
    }
}
