//! Event envelope, AMQP topology, publisher with confirms and the consumer loop.

mod consumer;
mod dead_letters;
mod envelope;
mod error;
mod publisher;
mod topology;

pub use consumer::{run_consumer, BatchHandler, ConsumerOptions, HandlerError};
pub use dead_letters::{count_dead_letters, replay_dead_letters};
pub use envelope::{Envelope, EventMetadata};
pub use error::BusError;
pub use publisher::Publisher;
pub use topology::{connect, ConsumerGroup, Topology};
