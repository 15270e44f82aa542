//! `filter`: keeps the message when a condition on one of its fields holds, drops it
//! otherwise. `{ filter = { value = "{token_id}", glob = "admin-*" } }`

use async_trait::async_trait;
use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};

use crate::event::Message;
use crate::pipeline::template::Template;
use crate::pipeline::{Flow, Processor, StepContext, StepError};
use crate::processors::BuildContext;

/// Options of `filter`: a `value` template and exactly one condition.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// What to test, as a template. Defaults to `"{text}"`.
    #[serde(default = "default_value")]
    pub value: String,
    /// Keep when the value equals this.
    pub equals: Option<String>,
    /// Keep when the value contains this.
    pub contains: Option<String>,
    /// Keep when the value starts with this.
    pub starts_with: Option<String>,
    /// Keep when the value matches this glob (`*`, `?`, `[abc]`).
    pub glob: Option<String>,
    /// Keep when the value is not empty.
    pub not_empty: Option<bool>,
    /// Turns the condition around: keep when it does not hold.
    #[serde(default)]
    pub invert: bool,
}

fn default_value() -> String {
    "{text}".into()
}

enum Condition {
    Equals(String),
    Contains(String),
    StartsWith(String),
    Glob(GlobMatcher),
    NotEmpty,
}

/// Drops messages that fail the condition.
pub struct Filter {
    value: Template,
    condition: Condition,
    invert: bool,
}

impl Filter {
    /// Builds the step; exactly one condition must be given.
    pub fn build(config: &FilterConfig, context: &BuildContext) -> Result<Self, String> {
        let mut conditions = Vec::new();
        if let Some(text) = &config.equals {
            conditions.push(Condition::Equals(text.clone()));
        }
        if let Some(text) = &config.contains {
            conditions.push(Condition::Contains(text.clone()));
        }
        if let Some(text) = &config.starts_with {
            conditions.push(Condition::StartsWith(text.clone()));
        }
        if let Some(pattern) = &config.glob {
            let glob = Glob::new(pattern).map_err(|error| format!("glob {pattern:?}: {error}"))?;
            conditions.push(Condition::Glob(glob.compile_matcher()));
        }
        if config.not_empty == Some(true) {
            conditions.push(Condition::NotEmpty);
        }
        let condition = match (conditions.pop(), conditions.is_empty()) {
            (Some(condition), true) => condition,
            _ => {
                return Err("give exactly one of equals, contains, starts_with, glob, not_empty".into());
            }
        };
        Ok(Filter { value: context.template(&config.value)?, condition, invert: config.invert })
    }

    fn holds(&self, value: &str) -> bool {
        match &self.condition {
            Condition::Equals(text) => value == text,
            Condition::Contains(text) => value.contains(text.as_str()),
            Condition::StartsWith(text) => value.starts_with(text.as_str()),
            Condition::Glob(matcher) => matcher.is_match(value),
            Condition::NotEmpty => !value.is_empty(),
        }
    }
}

#[async_trait]
impl Processor for Filter {
    async fn process(&self, message: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        if self.holds(&self.value.render(message)) != self.invert {
            Ok(Flow::Continue)
        } else {
            Ok(Flow::Drop("filtered out".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::test_support::run_step;

    fn filter(options: &str) -> Result<Filter, String> {
        let config: FilterConfig = toml::from_str(options).map_err(|e| e.to_string())?;
        Filter::build(&config, &BuildContext::new("test"))
    }

    async fn keeps(filter: &Filter, text: &str) -> bool {
        let mut message = Message::new("chat", "room-1", text);
        message.token_id = "admin-1".into();
        run_step(filter, message).await.0.unwrap() == Flow::Continue
    }

    #[tokio::test]
    async fn a_condition_keeps_matching_messages_and_drops_the_rest() {
        let contains = filter(r#"contains = "spam""#).unwrap();
        assert!(keeps(&contains, "buy spam").await);
        assert!(!keeps(&contains, "hello").await);
        let by_token = filter("value = \"{token_id}\"\nglob = \"admin-*\"").unwrap();
        assert!(keeps(&by_token, "anything").await);
    }

    #[tokio::test]
    async fn invert_turns_the_condition_around() {
        let no_spam = filter("contains = \"spam\"\ninvert = true").unwrap();
        assert!(!keeps(&no_spam, "buy spam").await);
        assert!(keeps(&no_spam, "hello").await);
    }

    #[test]
    fn zero_or_two_conditions_are_refused() {
        assert!(filter("").is_err());
        assert!(filter("equals = \"a\"\ncontains = \"b\"").is_err());
    }
}
