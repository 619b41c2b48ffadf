//! The bus against a real RabbitMQ: one test binary, one module per part.

mod common;
mod consumer;
mod dead_letters;
mod publisher;
mod topology;
