//! Where events come in, one module per source: Momento's webhook calls (`webhook`) and
//! topic subscriptions (`subscription`). Each turns what it receives into a [`Message`] and
//! hands it to the relay core with its [`Source`]. Nothing after that knows where an event
//! came from, beyond the source's name, which a route may match.
//!
//! [`Message`]: crate::event::Message

pub mod subscription;
pub mod webhook;

pub use crate::event::Source;
