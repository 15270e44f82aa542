//! `template`: replaces the text with one built from the event and earlier results.
//! `{ template = { text = "{user.name}: {text}" } }`

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::event::Message;
use crate::pipeline::template::Template;
use crate::pipeline::{Flow, Processor, StepContext, StepError};
use crate::processors::BuildContext;

/// Options of `template`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// The new text, a template.
    pub text: String,
}

/// Rewrites the text.
pub struct Rewrite {
    text: Template,
}

impl Rewrite {
    /// Builds the step from its options.
    pub fn build(config: &TemplateConfig, context: &BuildContext) -> Result<Self, String> {
        Ok(Rewrite { text: context.template(&config.text)? })
    }
}

#[async_trait]
impl Processor for Rewrite {
    async fn process(&self, message: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        message.text = self.text.render(message);
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::test_support::run_step;

    #[tokio::test]
    async fn the_text_is_rebuilt_from_the_event_and_attached_values() {
        let mut context = BuildContext::new("test");
        context.attach("user").unwrap();
        let step =
            Rewrite::build(&TemplateConfig { text: "{user.name} in {topic}: {text}".into() }, &context)
                .unwrap();
        let mut message = Message::new("chat", "room-1", "hello");
        message.attached.insert("user".into(), serde_json::json!({"name": "Ada"}));
        let (_, message) = run_step(&step, message).await;
        assert_eq!(message.text, "Ada in room-1: hello");
    }
}
