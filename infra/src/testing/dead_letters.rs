//! Why a message was dead-lettered, from its headers.

use lapin::message::BasicGetMessage;
use lapin::types::AMQPValue;

/// `reason` of the first `x-death` entry of a dead-lettered message.
pub fn death_reason(message: &BasicGetMessage) -> Option<String> {
    let headers = message.delivery.properties.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(death) = deaths.as_slice().first()? else {
        return None;
    };
    long_string(death.inner().get("reason")?)
}

/// Why the consumer dead-lettered a message at once (a permanent failure).
pub fn handler_error(message: &BasicGetMessage) -> Option<String> {
    let headers = message.delivery.properties.headers().as_ref()?;
    long_string(headers.inner().get(bus::DEAD_LETTER_REASON_HEADER)?)
}

fn long_string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(text.to_string()),
        _ => None,
    }
}
