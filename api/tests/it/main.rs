//! The api's integration tests, in one binary: each starts what it needs
//! (api, projector, worker) against the real PostgreSQL and RabbitMQ, with
//! a database and broker names of its own.

mod access;
mod api_clients;
mod audit;
mod audit_log;
mod auth;
mod bad_input;
mod broker_outage;
mod browser;
mod cli;
mod contract;
mod cookies;
mod edge;
mod email_race;
mod erasure;
mod erasure_race;
mod escalation;
mod failed_login_recovery;
mod health;
mod integrity;
mod kill;
mod limits;
mod machine_clients;
mod metrics;
mod ops;
mod outage;
mod outside_verifier;
mod protection;
mod relay;
mod request_heads;
mod second_factors;
mod sessions;
mod signer;
mod support;
mod users;
mod webhooks;
