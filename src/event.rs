//! The event Momento sends, and the message a pipeline works on.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A webhook event as Momento sends it, borrowed from the request body wherever the JSON
/// needs no unescaping. Unknown fields are ignored, so new ones from Momento do no harm.
#[derive(Debug, Deserialize)]
pub struct WebhookEvent<'a> {
    /// Cache the message was published in.
    #[serde(borrow)]
    pub cache: Cow<'a, str>,
    /// Topic the message was published on.
    #[serde(borrow)]
    pub topic: Cow<'a, str>,
    /// When the message was published, in ms since the epoch.
    pub event_timestamp: u64,
    /// When Momento called the webhook, in ms since the epoch.
    pub publish_timestamp: u64,
    /// Position of the message on its topic; resets to 0 after the topic has been idle.
    pub topic_sequence_number: u64,
    /// The `token_id` embedded in the publisher's token; empty when it has none.
    #[serde(borrow, default)]
    pub token_id: Cow<'a, str>,
    /// The message itself.
    #[serde(borrow)]
    pub text: Cow<'a, str>,
}

/// What a pipeline works on: the event's fields, owned, plus whatever steps attach (a
/// `lookup` result, parsed JSON). It is serializable so an unfinished pipeline can be
/// stored and resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Cache the event came from.
    pub cache: String,
    /// Topic the event came from.
    pub topic: String,
    /// The publisher's token id, empty when it has none.
    pub token_id: String,
    /// The text, as changed by the steps so far.
    pub text: String,
    /// When the message was published, in ms since the epoch.
    pub event_timestamp: u64,
    /// When Momento called the webhook, or when the relay received a subscription's item,
    /// in ms since the epoch.
    pub publish_timestamp: u64,
    /// Position of the message on its topic.
    pub topic_sequence_number: u64,
    /// The topic's sequence page (0 for webhook events, which carry none); a new page means
    /// Momento started numbering the topic afresh.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sequence_page: u64,
    /// Values attached by steps, by name (`user`, `json`, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attached: Map<String, Value>,
}

impl From<&WebhookEvent<'_>> for Message {
    fn from(event: &WebhookEvent<'_>) -> Self {
        Message {
            cache: event.cache.clone().into_owned(),
            topic: event.topic.clone().into_owned(),
            token_id: event.token_id.clone().into_owned(),
            text: event.text.clone().into_owned(),
            event_timestamp: event.event_timestamp,
            publish_timestamp: event.publish_timestamp,
            topic_sequence_number: event.topic_sequence_number,
            sequence_page: 0,
            attached: Map::new(),
        }
    }
}

impl Message {
    /// A message with the given origin and text, timestamps zero: for tests and tools.
    pub fn new(cache: &str, topic: &str, text: &str) -> Self {
        Message {
            cache: cache.to_owned(),
            topic: topic.to_owned(),
            token_id: String::new(),
            text: text.to_owned(),
            event_timestamp: 0,
            publish_timestamp: 0,
            topic_sequence_number: 0,
            sequence_page: 0,
            attached: Map::new(),
        }
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Where an event came from: a configured webhook or subscription, by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// `[webhooks.<name>]`
    Webhook(Arc<str>),
    /// `[subscriptions.<name>]`
    Subscription(Arc<str>),
}

impl fmt::Display for Source {
    /// `webhooks.<name>` or `subscriptions.<name>`, as in the configuration.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Webhook(name) => write!(formatter, "webhooks.{name}"),
            Source::Subscription(name) => write!(formatter, "subscriptions.{name}"),
        }
    }
}
