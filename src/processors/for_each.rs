//! `for_each`: not a step of its own but an option of any step,
//! `{ publish = { topic = "chat-{item}", for_each = ["en", "es"] } }`. It fans the message
//! out into one branch per item, just before the step it is written on, so that step and
//! every step after it run once per item, with the item as `{item}`.

use async_trait::async_trait;
use serde_json::Value;

use crate::event::Message;
use crate::pipeline::{Flow, Processor, StepContext, StepError};
use crate::processors::BuildContext;

/// The name each branch's item is attached under.
pub const ITEM: &str = "item";

/// Fans each message out, one branch per item.
pub struct ForEach {
    items: Vec<String>,
}

impl ForEach {
    /// Builds the fan-out, declaring `{item}` for the templates after it.
    pub fn build(items: &[String], context: &mut BuildContext) -> Result<Self, String> {
        context.attach(ITEM)?;
        Ok(ForEach { items: items.to_vec() })
    }
}

#[async_trait]
impl Processor for ForEach {
    async fn process(&self, message: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        let branches = self
            .items
            .iter()
            .map(|item| {
                let mut branch = message.clone();
                branch.attached.insert(ITEM.into(), Value::String(item.clone()));
                branch
            })
            .collect();
        Ok(Flow::FanOut(branches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::test_support::run_step;

    #[tokio::test]
    async fn each_item_gets_a_copy_of_the_message_with_the_item_attached() {
        let step = ForEach::build(&["en".into(), "es".into()], &mut BuildContext::new("t")).unwrap();
        let (flow, _) = run_step(&step, Message::new("c", "t", "hi")).await;
        let Ok(Flow::FanOut(branches)) = flow else { panic!("{flow:?}") };
        let items: Vec<_> = branches.iter().map(|b| (b.text.as_str(), b.attached[ITEM].clone())).collect();
        assert_eq!(items, vec![("hi", Value::from("en")), ("hi", Value::from("es"))]);
    }
}
