//! The relay binary against the real PostgreSQL and RabbitMQ.

mod backlog_rate;
mod election;
mod horizon;
mod metrics;
mod pipeline;
mod support;
