//! topic-relay: processes Momento Topics events outside Lambda. Data flows one way through
//! its modules, and none imports one that imports it back (a test checks it):
//!
//! - [`sources`] take events in: topic subscriptions, and webhooks ([`verify`], then
//!   [`accept`]).
//! - The core, [`relay`], runs the stages in the order data moves through them: [`route`],
//!   [`delivery`] (which runs the [`pipeline`] of [`processors`] and keeps what cannot
//!   finish in its spool), and the [`backend`] they publish and read through.
//! - [`http`] answers Momento, publishers and operators; [`tokens`] vends publishers' tokens,
//!   off the path of events; [`health`] says whether the relay can serve.
//! - Each part's settings live beside it. [`config`] only assembles them into one
//!   [`Settings`](config::Settings), loads the file and checks it; [`startup`] wires the
//!   parts together; [`common`] holds the few values every part shares.

#![warn(missing_docs)]

pub mod accept;
pub mod backend;
pub mod cli;
pub mod commands;
pub mod common;
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
