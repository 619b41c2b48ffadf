//! The identity service's HTTP API: commands through cqrs-es and postgres-es,
//! queries on read models; it starts the outbox relay (crate `relay`) by default.

pub mod admin;
pub mod audit_acknowledge;
pub mod audit_export;
pub mod audit_verify;
pub mod auth;
pub mod client_address;
pub mod closed_sets;
pub mod correlation;
pub mod cors;
pub mod extract;
pub mod freshness;
pub mod http_metrics;
pub mod openapi;
pub mod problem;
pub mod rate_limit;
pub mod request_head_problems;
pub mod routes;
pub mod screening;
pub mod security_headers;
pub mod server;
pub mod settings;
pub mod startup;
pub mod user_queries;
