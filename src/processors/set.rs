//! `set`: stores the message at a key named after the event, with a time to live.
//! `{ set = { key = "last-message:{token_id}", ttl = "1h" } }`

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::payload::PayloadFormat;
use crate::common::duration;
use crate::event::Message;
use crate::pipeline::template::Template;
use crate::pipeline::{Flow, Processor, StepContext, StepError};
use crate::processors::BuildContext;

/// Options of `set`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// The key, a template.
    pub key: String,
    /// The item's time to live; defaults to `momento.default_ttl`.
    #[serde(default, with = "duration::optional", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Cache to write to, a template; defaults to the event's cache.
    #[serde(default = "super::event_cache")]
    pub cache: String,
    /// `text` or `json` (the envelope, as `publish` sends it).
    #[serde(default)]
    pub format: PayloadFormat,
}

/// Stores each message.
pub struct Set {
    key: Template,
    cache: Template,
    ttl: Option<Duration>,
    format: PayloadFormat,
}

impl Set {
    /// Builds the step from its options.
    pub fn build(config: &SetConfig, context: &BuildContext) -> Result<Self, String> {
        Ok(Set {
            key: context.template(&config.key)?,
            cache: context.template(&config.cache)?,
            ttl: config.ttl,
            format: config.format,
        })
    }
}

#[async_trait]
impl Processor for Set {
    async fn process(&self, message: &mut Message, context: &StepContext<'_>) -> Result<Flow, StepError> {
        let (cache, key) = (self.cache.render(message), self.key.render(message));
        context.backend.set(&cache, &key, self.format.render(message).as_bytes(), self.ttl).await?;
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, MemoryBackend};
    use crate::processors::test_support::run_with;

    #[tokio::test]
    async fn the_message_is_stored_at_the_rendered_key() {
        let config: SetConfig =
            toml::from_str("key = \"last:{token_id}\"\nttl = \"1h\"\nformat = \"json\"").unwrap();
        let step = Set::build(&config, &BuildContext::new("test")).unwrap();
        let backend = MemoryBackend::new();
        let mut message = Message::new("chat", "room-1", "hello");
        message.token_id = "42".into();
        run_with(&step, message, backend.clone()).await.flow.unwrap();
        let stored = backend.get("chat", "last:42").await.unwrap().expect("stored");
        let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        assert_eq!(stored["text"], "hello");
    }
}
