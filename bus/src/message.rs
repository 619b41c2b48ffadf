//! An event as it goes on the wire, built once: its routing key, JSON body
//! and AMQP properties (persistent JSON, ids and tracing headers).

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use uuid::Uuid;

use crate::topology::short;
use crate::{BusError, Envelope};

/// Header names of an event message.
pub mod headers {
    pub use crate::envelope::metadata_keys::{CAUSATION_ID, CORRELATION_ID};
    pub const AGGREGATE_TYPE: &str = "aggregate_type";
    pub const AGGREGATE_ID: &str = "aggregate_id";
    pub const SEQUENCE: &str = "sequence";
    pub const GLOBAL_POSITION: &str = "global_position";
}

pub(crate) const CONTENT_TYPE: &str = "application/json";
/// AMQP delivery mode of a message the broker keeps on disk.
pub(crate) const PERSISTENT: u8 = 2;

/// One event ready to publish.
#[derive(Clone, Debug)]
pub struct Message {
    pub(crate) event_id: Uuid,
    pub(crate) routing_key: ShortString,
    pub(crate) body: Vec<u8>,
    pub(crate) properties: BasicProperties,
}

impl Message {
    /// The event's message: routing key = event type, body = its JSON.
    pub fn of(event: &Envelope) -> Result<Self, BusError> {
        Self::with_body(event, event.to_json())
    }

    /// The event's message with `body`, the event's JSON serialized
    /// elsewhere (the same bytes [`Envelope::to_json`] would give, or an
    /// equal JSON document).
    pub fn with_body(event: &Envelope, body: Vec<u8>) -> Result<Self, BusError> {
        Ok(Self {
            event_id: event.event_id,
            routing_key: short(&event.event_type)?,
            body,
            properties: properties(event),
        })
    }

    pub fn event_id(&self) -> Uuid {
        self.event_id
    }

    pub fn routing_key(&self) -> &str {
        self.routing_key.as_str()
    }

    pub fn body_len(&self) -> usize {
        self.body.len()
    }
}

fn properties(event: &Envelope) -> BasicProperties {
    let mut props = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(CONTENT_TYPE.into())
        .with_message_id(event.event_id.to_string().into())
        .with_timestamp(u64::try_from(event.recorded_at.timestamp()).unwrap_or(0))
        .with_headers(header_table(event));
    if let Ok(kind) = ShortString::try_new(event.event_type.as_str()) {
        props = props.with_type(kind);
    }
    let correlation = event.metadata.correlation_id.as_deref();
    if let Some(Ok(correlation)) = correlation.map(ShortString::try_new) {
        props = props.with_correlation_id(correlation);
    }
    props
}

fn header_table(event: &Envelope) -> FieldTable {
    let mut table = FieldTable::default();
    let mut text = |key: &str, value: &str| {
        table.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
    };
    if let Some(correlation) = &event.metadata.correlation_id {
        text(headers::CORRELATION_ID, correlation);
    }
    if let Some(causation) = &event.metadata.causation_id {
        text(headers::CAUSATION_ID, causation);
    }
    text(headers::AGGREGATE_TYPE, &event.aggregate_type);
    text(headers::AGGREGATE_ID, &event.aggregate_id);
    table.insert(
        headers::SEQUENCE.into(),
        AMQPValue::LongLongInt(event.sequence),
    );
    table.insert(
        headers::GLOBAL_POSITION.into(),
        AMQPValue::LongLongInt(event.global_position),
    );
    table
}
