//! topic-relay: processes Momento Topics events outside Lambda. Events come in from
//! [`sources`]: webhooks ([`verify`], then [`accept`]) and topic subscriptions. The core,
//! [`relay`], then runs the stages in the order data moves through them: [`route`],
//! [`delivery`] (which runs the [`pipeline`] of [`processors`] and keeps what cannot finish
//! in its spool), [`backend`]. [`http`] answers Momento and operators; [`tokens`] vends
//! publishers' tokens, off the path of events.

#![warn(missing_docs)]

pub mod accept;
pub mod backend;
pub mod cli;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod event;
pub mod health;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod processors;
pub mod relay;
pub mod route;
pub mod sources;
pub mod startup;
pub mod telemetry;
pub mod tokens;
pub mod verify;
