//! What effect steps (`publish`, `list_push`, `set`) write: the text alone, or a JSON
//! envelope of the whole message.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::Message;

/// The shape of a written payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The text as it is.
    #[default]
    Text,
    /// `{text, token_id, cache, topic, event_timestamp, publish_timestamp,
    /// topic_sequence_number, sequence_page (subscription items only), ...attached}`.
    Json,
}

impl PayloadFormat {
    /// The payload for `message` in this format.
    pub fn render(self, message: &Message) -> Cow<'_, str> {
        match self {
            PayloadFormat::Text => Cow::Borrowed(&message.text),
            PayloadFormat::Json => Cow::Owned(envelope(message)),
        }
    }
}

/// The JSON envelope: attached values first, then the event's own fields, which win over an
/// attached value of the same name.
pub fn envelope(message: &Message) -> String {
    let mut object: Map<String, Value> = message.attached.clone();
    object.insert("text".into(), message.text.clone().into());
    object.insert("token_id".into(), message.token_id.clone().into());
    object.insert("cache".into(), message.cache.clone().into());
    object.insert("topic".into(), message.topic.clone().into());
    object.insert("event_timestamp".into(), message.event_timestamp.into());
    object.insert("publish_timestamp".into(), message.publish_timestamp.into());
    object.insert("topic_sequence_number".into(), message.topic_sequence_number.into());
    if message.sequence_page != 0 {
        object.insert("sequence_page".into(), message.sequence_page.into());
    }
    Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_carries_the_event_and_what_steps_attached_but_event_fields_win() {
        let mut message = Message::new("chat", "room-1", "hi");
        message.token_id = "user-42".into();
        message.attached.insert("user".into(), serde_json::json!({"name": "Ada"}));
        message.attached.insert("text".into(), "shadowed".into());
        let envelope: Value = serde_json::from_str(&PayloadFormat::Json.render(&message)).unwrap();
        assert_eq!(envelope["text"], "hi");
        assert_eq!(envelope["user"]["name"], "Ada");
        assert_eq!(envelope["token_id"], "user-42");
        assert_eq!(envelope["topic"], "room-1");
        assert_eq!(PayloadFormat::Text.render(&message), "hi");
    }
}
