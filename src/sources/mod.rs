//! Where events come in, one module per source: Momento's webhook calls (`webhook`) and
//! topic subscriptions (`subscription`). Each turns what it receives into a [`Message`] and
//! hands it to the relay core with its [`Source`]. Nothing after that knows where an event
//! came from, beyond the source's name, which a route may match.
//!
//! [`Message`]: crate::event::Message

pub mod subscription;
pub mod webhook;

use std::fmt;
use std::sync::Arc;

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
