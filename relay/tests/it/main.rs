//! The relay binary against the real PostgreSQL and RabbitMQ.

mod election;
mod metrics;
