use uuid::Uuid;

/// Everything that can go wrong in the bus crate.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The AMQP client or the broker reported an error (connection/channel failure,
    /// precondition failed on a re-declare with different arguments, ...).
    #[error("amqp error: {0}")]
    Amqp(#[from] lapin::Error),

    /// A message body is not a valid [`crate::Envelope`].
    #[error("cannot decode envelope: {0}")]
    Decode(#[from] serde_json::Error),

    /// The broker negatively confirmed a published event.
    #[error("broker nacked event {event_id}")]
    Nacked { event_id: Uuid },

    /// The broker returned a published event as unroutable.
    #[error("broker returned event {event_id}: {reply_code} {reply_text}")]
    Returned {
        event_id: Uuid,
        reply_code: u16,
        reply_text: String,
    },

    /// A publish was not confirmed although the channel is in confirm mode.
    #[error("publish of event {event_id} was not confirmed")]
    NotConfirmed { event_id: Uuid },

    /// A message that is not an event was not acked by the broker.
    #[error("broker did not ack message {message_id}")]
    DocumentNotConfirmed { message_id: String },

    /// A name does not fit an AMQP short string (at most 255 bytes).
    #[error("name too long for AMQP (max 255 bytes): {0}")]
    NameTooLong(String),

    /// The consumer stream ended (consumer cancelled by the broker, e.g. queue deleted).
    #[error("consumer on queue {queue} was cancelled")]
    ConsumerCancelled { queue: String },

    /// A dead-letter queue holds more messages than one sweep can hold
    /// unacknowledged (a prefetch of 65,535), so it cannot be read in place.
    #[error("{queue} holds {waiting} messages, more than one sweep can read in place")]
    TooManyDeadLetters { queue: String, waiting: u32 },

    /// An ack/nack/reject could not be sent because the channel is closed.
    #[error("channel closed before delivery {delivery_tag} could be settled")]
    ChannelClosed { delivery_tag: u64 },
}
