//! The projector's integration tests, in one binary: each needs PostgreSQL
//! and RabbitMQ, and they share the fixtures in `support`.

mod dead_letters;
mod delivery;
mod health;
mod identity_views;
mod metrics;
mod rebuild;
mod restart;
mod support;
