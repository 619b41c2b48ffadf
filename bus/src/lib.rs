//! Event envelope, AMQP topology, publisher with confirms and the consumer loop.

mod consumer;
mod dead_letters;
mod envelope;
mod error;
mod handler;
mod message;
pub mod metrics;
mod publisher;
mod topology;

pub use consumer::{run_consumer, ConsumerOptions};
pub use dead_letters::{
    count_dead_letters, replay_dead_letters, sweep, DeadLetter, Disposal, DEAD_LETTER_REASON_HEADER,
};
pub use envelope::{metadata_keys, Envelope, EventMetadata};
pub use error::BusError;
pub use handler::{BatchHandler, BoxError, HandlerError};
pub use message::{headers, Message};
pub use publisher::{PendingBatch, PendingDocument, Publisher};
pub use topology::{connect, ready_messages, ConsumerGroup, Topology};
