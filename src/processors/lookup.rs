//! `lookup`: reads a cache item named after the event, such as `user:{token_id}`, and
//! attaches it to the message — Momento's identity-through-`token_id` pattern.
//! `{ lookup = { key = "user:{token_id}", into = "user", on_miss = "drop" } }`

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Message;
use crate::pipeline::template::Template;
use crate::pipeline::{Flow, Processor, StepContext, StepError};
use crate::processors::BuildContext;

/// Options of `lookup`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The key to read, a template.
    pub key: String,
    /// Name the value is attached under, for later templates (`{user.name}`) and the JSON
    /// envelope.
    pub into: String,
    /// Cache to read from, a template; defaults to the event's cache.
    #[serde(default = "super::event_cache")]
    pub cache: String,
    /// What happens when the key does not exist.
    #[serde(default)]
    pub on_miss: OnMiss,
}

/// What `lookup` does on a miss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMiss {
    /// Stop here; the event counts as handled (200 `dropped`).
    #[default]
    Drop,
    /// Go on without the value.
    Continue,
    /// Refuse the event (403 `rejected`).
    Reject,
}

/// Reads a cache item into the message.
pub struct Lookup {
    key: Template,
    cache: Template,
    into: String,
    on_miss: OnMiss,
}

impl Lookup {
    /// Builds the step and declares its `into` name to later steps.
    pub fn build(config: &LookupConfig, context: &mut BuildContext) -> Result<Self, String> {
        let lookup = Lookup {
            key: context.template(&config.key)?,
            cache: context.template(&config.cache)?,
            into: config.into.clone(),
            on_miss: config.on_miss,
        };
        context.attach(&config.into)?;
        Ok(lookup)
    }
}

/// A cache value as JSON when it is JSON, else as a string.
fn decode(bytes: Vec<u8>) -> Value {
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}

#[async_trait]
impl Processor for Lookup {
    async fn process(&self, message: &mut Message, context: &StepContext<'_>) -> Result<Flow, StepError> {
        let (cache, key) = (self.cache.render(message), self.key.render(message));
        match context.backend.get(&cache, &key).await? {
            Some(bytes) => {
                message.attached.insert(self.into.clone(), decode(bytes));
                Ok(Flow::Continue)
            }
            None => match self.on_miss {
                OnMiss::Drop => Ok(Flow::Drop(format!("no item {key:?} in cache {cache:?}").into())),
                OnMiss::Continue => Ok(Flow::Continue),
                OnMiss::Reject => Err(StepError::Rejected(format!("no item {key:?} in cache {cache:?}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, MemoryBackend};
    use crate::processors::test_support::run_with;

    async fn lookup(on_miss: &str, stored: Option<&[u8]>) -> (Result<Flow, StepError>, Message) {
        let config: LookupConfig =
            toml::from_str(&format!("key = \"user:{{token_id}}\"\ninto = \"user\"\non_miss = \"{on_miss}\""))
                .unwrap();
        let step = Lookup::build(&config, &mut BuildContext::new("test")).unwrap();
        let backend = MemoryBackend::new();
        if let Some(value) = stored {
            backend.set("chat", "user:42", value, None).await.unwrap();
        }
        let mut message = Message::new("chat", "room-1", "hi");
        message.token_id = "42".into();
        let run = run_with(&step, message, backend).await;
        (run.flow, run.message)
    }

    #[tokio::test]
    async fn a_json_record_is_attached_as_json_and_text_as_a_string() {
        let (flow, message) = lookup("drop", Some(br#"{"name":"Ada"}"#)).await;
        assert_eq!(flow.unwrap(), Flow::Continue);
        assert_eq!(message.attached["user"]["name"], "Ada");
        let (_, message) = lookup("drop", Some(b"plain")).await;
        assert_eq!(message.attached["user"], "plain");
    }

    #[tokio::test]
    async fn a_miss_drops_continues_or_rejects_as_configured() {
        assert!(matches!(lookup("drop", None).await.0, Ok(Flow::Drop(_))));
        let (flow, message) = lookup("continue", None).await;
        assert_eq!(flow.unwrap(), Flow::Continue);
        assert!(!message.attached.contains_key("user"));
        assert!(matches!(lookup("reject", None).await.0, Err(StepError::Rejected(_))));
    }

    #[test]
    fn later_steps_may_use_the_attached_name() {
        let config: LookupConfig = toml::from_str("key = \"k\"\ninto = \"user\"").unwrap();
        let mut context = BuildContext::new("test");
        Lookup::build(&config, &mut context).unwrap();
        assert!(context.template("{user.name}").is_ok());
    }
}
