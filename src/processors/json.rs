//! `json`: parses the text as JSON so later steps and templates can use its fields
//! (`{json.courseId}`). `{ json = { into = "json", on_invalid = "drop" } }`

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::event::Message;
use crate::pipeline::{Flow, Processor, StepContext, StepError};
use crate::processors::BuildContext;

/// Options of `json`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JsonConfig {
    /// Name the parsed value is attached under; defaults to `json`.
    #[serde(default = "default_into")]
    pub into: String,
    /// What happens when the text is not JSON.
    #[serde(default)]
    pub on_invalid: OnInvalid,
}

fn default_into() -> String {
    "json".into()
}

/// What `json` does with text that is not JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnInvalid {
    /// Stop here; the event counts as handled (200 `dropped`).
    #[default]
    Drop,
    /// Go on without the parsed value.
    Continue,
    /// Refuse the event (422 `processing_failed`).
    Fail,
}

/// Parses the text into the message.
pub struct Json {
    into: String,
    on_invalid: OnInvalid,
}

impl Json {
    /// Builds the step and declares its `into` name to later steps.
    pub fn build(config: &JsonConfig, context: &mut BuildContext) -> Result<Self, String> {
        context.attach(&config.into)?;
        Ok(Json { into: config.into.clone(), on_invalid: config.on_invalid })
    }
}

#[async_trait]
impl Processor for Json {
    async fn process(&self, message: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        match serde_json::from_str(&message.text) {
            Ok(value) => {
                message.attached.insert(self.into.clone(), value);
                Ok(Flow::Continue)
            }
            Err(error) => match self.on_invalid {
                OnInvalid::Drop => Ok(Flow::Drop(format!("text is not JSON: {error}").into())),
                OnInvalid::Continue => Ok(Flow::Continue),
                OnInvalid::Fail => Err(StepError::Failed(format!("text is not JSON: {error}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::test_support::run_step;

    fn step(on_invalid: OnInvalid) -> Json {
        Json::build(&JsonConfig { into: "json".into(), on_invalid }, &mut BuildContext::new("test")).unwrap()
    }

    #[tokio::test]
    async fn json_text_is_attached_for_later_templates() {
        let (flow, message) =
            run_step(&step(OnInvalid::Fail), Message::new("c", "t", r#"{"courseId": 7}"#)).await;
        assert_eq!(flow.unwrap(), Flow::Continue);
        assert_eq!(message.attached["json"]["courseId"], 7);
    }

    #[test]
    fn an_into_name_that_hides_an_event_field_is_refused() {
        let config = JsonConfig { into: "text".into(), on_invalid: OnInvalid::Drop };
        assert!(Json::build(&config, &mut BuildContext::new("test")).is_err());
    }

    #[tokio::test]
    async fn invalid_json_follows_the_policy() {
        let text = Message::new("c", "t", "not json");
        assert!(matches!(run_step(&step(OnInvalid::Drop), text.clone()).await.0, Ok(Flow::Drop(_))));
        assert!(matches!(run_step(&step(OnInvalid::Continue), text.clone()).await.0, Ok(Flow::Continue)));
        assert!(matches!(run_step(&step(OnInvalid::Fail), text).await.0, Err(StepError::Failed(_))));
    }
}
