//! `lowercase`: the text in lower case.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::event::Message;
use crate::pipeline::{Flow, Processor, StepContext, StepError};

/// `{ lowercase = {} }` takes no options.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LowercaseConfig {}

/// Lowercases the message text.
pub struct Lowercase;

#[async_trait]
impl Processor for Lowercase {
    async fn process(&self, message: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        if message.text.is_ascii() {
            message.text.make_ascii_lowercase();
        } else {
            message.text = message.text.to_lowercase();
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::test_support::run_step;

    #[tokio::test]
    async fn ascii_and_unicode_text_is_lowercased() {
        let (_, message) = run_step(&Lowercase, Message::new("c", "t", "HeLLo ÄÖ")).await;
        assert_eq!(message.text, "hello äö");
    }
}
