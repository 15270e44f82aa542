//! topic-relay: a Momento Topics webhook endpoint that verifies, routes, processes and
//! republishes events. The stages, in the order data moves through them:
//! [`verify`], [`accept`], [`route`], [`delivery`] (which runs the [`pipeline`] of
//! [`processors`] and keeps what cannot finish in its spool), [`backend`]. [`relay`] runs them
//! in that order and [`http`] answers Momento.

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
pub mod startup;
pub mod telemetry;
pub mod verify;
