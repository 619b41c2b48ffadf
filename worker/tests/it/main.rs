//! The worker against a real PostgreSQL and RabbitMQ: one test binary, one
//! module per part.

mod dead_letters;
mod expiry;
mod lockout;
mod metrics;
mod restart;
mod support;
mod webhooks;
