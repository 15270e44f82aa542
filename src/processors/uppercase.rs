//! `uppercase`: the text in upper case, as in Momento's asynchronous-processing example.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::event::Message;
use crate::pipeline::{Flow, Processor, StepContext, StepError};

/// `{ uppercase = {} }` takes no options.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UppercaseConfig {}

/// Uppercases the message text.
pub struct Uppercase;

#[async_trait]
impl Processor for Uppercase {
    async fn process(&self, message: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        if message.text.is_ascii() {
            message.text.make_ascii_uppercase();
        } else {
            message.text = message.text.to_uppercase();
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::test_support::run_step;

    #[tokio::test]
    async fn ascii_and_unicode_text_is_uppercased() {
        let (flow, message) = run_step(&Uppercase, Message::new("c", "t", "hello straße")).await;
        assert_eq!(flow.unwrap(), Flow::Continue);
        assert_eq!(message.text, "HELLO STRASSE");
        let (_, message) = run_step(&Uppercase, Message::new("c", "t", "plain ascii")).await;
        assert_eq!(message.text, "PLAIN ASCII");
    }
}
