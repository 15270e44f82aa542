//! The relay's integration tests, one module per capability, linked into one binary so that
//! the dependency tree is linked once rather than once per file.

mod support;

mod admin;
mod cli;
mod config;
mod crash_recovery;
mod delivery;
mod docs_links;
mod fan_out;
mod hot_path;
mod http_step;
mod http_threads;
mod listening;
mod listening_crash;
mod listening_replicas;
mod listening_stream;
mod moderated_chat;
mod module_graph;
mod momento_backend;
mod momento_patterns;
mod openapi;
mod ops_port;
mod reload;
mod scripts;
mod seed_flow;
mod shipped_configs;
mod shutdown;
mod slow_clients;
mod status_codes;
mod subscriptions;
mod tokens;
mod tokens_momento;
mod verify_fuzz;
