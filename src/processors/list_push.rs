//! `list_push`: appends the message to a cache list, keeping the newest N — a chat history.
//! `{ list_push = { list = "history:{topic}", keep = 100, ttl = "4h" } }`

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::payload::PayloadFormat;
use crate::common::duration;
use crate::event::Message;
use crate::pipeline::template::Template;
use crate::pipeline::{Flow, Processor, StepContext, StepError};
use crate::processors::BuildContext;

/// Options of `list_push`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListPushConfig {
    /// The list's name, a template.
    pub list: String,
    /// Keep only the newest this many items.
    pub keep: Option<u32>,
    /// The list's time to live, refreshed on every push; defaults to `momento.default_ttl`.
    #[serde(default, with = "duration::optional", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Cache holding the list, a template; defaults to the event's cache.
    #[serde(default = "super::event_cache")]
    pub cache: String,
    /// `text` or `json` (the envelope, as `publish` sends it).
    #[serde(default)]
    pub format: PayloadFormat,
}

/// Appends each message to a list.
pub struct ListPush {
    list: Template,
    cache: Template,
    keep: Option<u32>,
    ttl: Option<Duration>,
    format: PayloadFormat,
}

impl ListPush {
    /// Builds the step from its options.
    pub fn build(config: &ListPushConfig, context: &BuildContext) -> Result<Self, String> {
        if config.keep == Some(0) {
            return Err("keep must be at least 1".into());
        }
        Ok(ListPush {
            list: context.template(&config.list)?,
            cache: context.template(&config.cache)?,
            keep: config.keep,
            ttl: config.ttl,
            format: config.format,
        })
    }
}

#[async_trait]
impl Processor for ListPush {
    async fn process(&self, message: &mut Message, context: &StepContext<'_>) -> Result<Flow, StepError> {
        let (cache, list) = (self.cache.render(message), self.list.render(message));
        let value = self.format.render(message);
        context.backend.list_push_back(&cache, &list, value.as_bytes(), self.keep, self.ttl).await?;
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;
    use crate::processors::test_support::run_with;

    #[tokio::test]
    async fn pushes_keep_only_the_newest_items_of_the_rendered_list() {
        let config: ListPushConfig =
            toml::from_str("list = \"history:{topic}\"\nkeep = 2\nttl = \"4h\"").unwrap();
        let step = ListPush::build(&config, &BuildContext::new("test")).unwrap();
        let backend = MemoryBackend::new();
        for text in ["one", "two", "three"] {
            run_with(&step, Message::new("chat", "room-1", text), backend.clone()).await.flow.unwrap();
        }
        assert_eq!(backend.list("chat", "history:room-1"), vec![b"two".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn keeping_zero_items_is_refused() {
        let config: ListPushConfig = toml::from_str("list = \"l\"\nkeep = 0").unwrap();
        assert!(ListPush::build(&config, &BuildContext::new("test")).is_err());
    }
}
