//! `publish`: sends the message to a topic (through the `TopicClient` pool, or the embedded
//! bus). `{ publish = { topic = "topic 2" } }`; `cache` defaults to the event's cache.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::payload::PayloadFormat;
use crate::event::Message;
use crate::pipeline::template::Template;
use crate::pipeline::{Flow, Processor, StepContext, StepError};
use crate::processors::BuildContext;

/// Options of `publish`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// Target cache, a template; defaults to `"{cache}"`, the event's own cache.
    #[serde(default = "super::event_cache")]
    pub cache: String,
    /// Target topic, a template such as `"{topic}-out"`.
    pub topic: String,
    /// `text` publishes the text as it is; `json` publishes an envelope with the text, the
    /// token id, where the event came from, its timestamps and everything steps attached.
    #[serde(default)]
    pub format: PayloadFormat,
}

/// Publishes each message.
pub struct Publish {
    cache: Template,
    topic: Template,
    format: PayloadFormat,
}

impl Publish {
    /// Builds the step from its options.
    pub fn build(config: &PublishConfig, context: &BuildContext) -> Result<Self, String> {
        Ok(Publish {
            cache: context.template(&config.cache)?,
            topic: context.template(&config.topic)?,
            format: config.format,
        })
    }
}

#[async_trait]
impl Processor for Publish {
    async fn process(&self, message: &mut Message, context: &StepContext<'_>) -> Result<Flow, StepError> {
        let cache = self.cache.render_borrowed(message);
        let topic = self.topic.render_borrowed(message);
        context.backend.publish(&cache, &topic, &self.format.render(message)).await?;
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;
    use crate::processors::test_support::run_with;

    fn publish(options: &str, attached: &[&str]) -> Publish {
        let config: PublishConfig = toml::from_str(options).unwrap();
        let mut context = BuildContext::new("test");
        attached.iter().for_each(|name| context.attach(name).unwrap());
        Publish::build(&config, &context).unwrap()
    }

    #[tokio::test]
    async fn text_goes_to_the_rendered_topic_in_the_events_cache_by_default() {
        let step = publish(r#"topic = "{topic}-out""#, &[]);
        let run = run_with(&step, Message::new("chat", "room-1", "HI"), MemoryBackend::new()).await;
        assert_eq!(run.flow.unwrap(), Flow::Continue);
        assert_eq!(run.published, vec![("chat".into(), "room-1-out".into(), "HI".into())]);
    }

    #[tokio::test]
    async fn json_format_sends_an_envelope_with_attached_values() {
        let step = publish("cache = \"other\"\ntopic = \"t\"\nformat = \"json\"", &["user"]);
        let mut message = Message::new("chat", "room-1", "hi");
        message.token_id = "user-42".into();
        message.attached.insert("user".into(), serde_json::json!({"name": "Ada"}));
        let mut run = run_with(&step, message, MemoryBackend::new()).await;
        let (cache, _, payload) = run.published.remove(0);
        let payload: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(cache, "other");
        assert_eq!(payload["text"], "hi");
        assert_eq!(payload["token_id"], "user-42");
        assert_eq!(payload["user"]["name"], "Ada");
        assert_eq!(payload["topic"], "room-1");
    }

    #[test]
    fn a_template_naming_an_unknown_field_is_refused() {
        let config: PublishConfig = toml::from_str(r#"topic = "{user.name}""#).unwrap();
        assert!(Publish::build(&config, &BuildContext::new("test")).is_err());
    }
}
