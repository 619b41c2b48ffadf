//! A consumer group's dead-letter queue: the consumer puts a permanent
//! failure there with its reason; operators count what is there and move it
//! back to the group's queue once the cause is fixed.

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use uuid::Uuid;

use crate::publisher::check_confirm;
use crate::topology::{dead_letter_queue_of, short};
use crate::{BusError, ConsumerGroup, Topology};

/// Header of a message the consumer dead-lettered itself (a permanent
/// failure): why, as the error's display chain.
pub const DEAD_LETTER_REASON_HEADER: &str = "x-handler-error";

/// The quorum queue's count of earlier deliveries; a copy must not carry it.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// Puts messages of one queue into its dead-letter queue, each with the
/// reason it failed, on a channel of its own in confirm mode.
pub(crate) struct DeadLetterQueue {
    channel: Channel,
    queue: ShortString,
}

impl DeadLetterQueue {
    pub(crate) async fn open(conn: &Connection, queue: &str) -> Result<Self, BusError> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let queue = short(&dead_letter_queue_of(queue))?;
        Ok(Self { channel, queue })
    }

    /// Publishes a copy of the delivery with `reason` in its headers (through
    /// the default exchange, mandatory) and waits for the broker's confirm.
    /// The caller acks the original only then, so a crash in between leaves
    /// the original in its queue: at worst a message is dead-lettered twice,
    /// never lost.
    pub(crate) async fn put(&self, delivery: &Delivery, reason: &str) -> Result<(), BusError> {
        let message_id = message_id(&delivery.properties);
        let confirm = self
            .channel
            .basic_publish(
                short("")?,
                self.queue.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &delivery.data,
                with_reason(&delivery.properties, reason),
            )
            .await?;
        check_confirm(message_id, confirm).await
    }

    pub(crate) async fn close(&self) {
        if self.channel.status().connected() {
            let _ = self.channel.close(200, "OK".into()).await;
        }
    }
}

/// The delivery's properties, with `reason` and without a delivery count.
fn with_reason(properties: &BasicProperties, reason: &str) -> BasicProperties {
    let mut headers = properties
        .headers()
        .as_ref()
        .map(|headers| headers.inner().clone())
        .unwrap_or_default();
    headers.remove(DELIVERY_COUNT_HEADER);
    headers.insert(
        DEAD_LETTER_REASON_HEADER.into(),
        AMQPValue::LongString(LongString::from(reason)),
    );
    properties.clone().with_headers(FieldTable::from(headers))
}

/// The event id a message carries as its `message_id` (nil if none).
fn message_id(properties: &BasicProperties) -> Uuid {
    properties
        .message_id()
        .as_ref()
        .and_then(|id| Uuid::parse_str(id.as_str()).ok())
        .unwrap_or_default()
}

/// Messages waiting in the group's dead-letter queue.
pub async fn count_dead_letters(
    conn: &Connection,
    topology: &Topology,
    group: &ConsumerGroup,
) -> Result<u32, BusError> {
    crate::ready_messages(conn, &topology.dead_letter_queue_name(group)).await
}

/// Moves up to `max` dead letters back to the group's queue (through the
/// default exchange). Each is removed from the dead-letter queue only after
/// the broker confirmed the copy, so a failure part-way loses nothing; at
/// worst a message is delivered twice, which consumers tolerate.
pub async fn replay_dead_letters(
    conn: &Connection,
    topology: &Topology,
    group: &ConsumerGroup,
    max: usize,
) -> Result<usize, BusError> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let dead_queue = short(&topology.dead_letter_queue_name(group))?;
    let queue = short(&topology.queue_name(group))?;
    let mut moved = 0;
    while moved < max {
        let Some(message) = channel
            .basic_get(dead_queue.clone(), BasicGetOptions::default())
            .await?
        else {
            break;
        };
        let message_id = message_id(&message.properties);
        let confirm = channel
            .basic_publish(
                short("")?,
                queue.clone(),
                BasicPublishOptions::default(),
                &message.data,
                message.properties.clone(),
            )
            .await?;
        check_confirm(message_id, confirm).await?;
        message.ack(BasicAckOptions::default()).await?;
        moved += 1;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_keeps_the_headers_adds_the_reason_and_drops_the_delivery_count() {
        let mut headers = FieldTable::default();
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
        headers.insert("sequence".into(), AMQPValue::LongLongInt(7));
        let original = BasicProperties::default()
            .with_message_id("id-1".into())
            .with_headers(headers);

        let copy = with_reason(&original, "bad payload");

        let copied = copy.headers().as_ref().unwrap().inner();
        assert!(!copied.contains_key(DELIVERY_COUNT_HEADER));
        assert_eq!(copied["sequence"], AMQPValue::LongLongInt(7));
        let reason = AMQPValue::LongString(LongString::from("bad payload"));
        assert_eq!(copied[DEAD_LETTER_REASON_HEADER], reason);
        assert_eq!(copy.message_id(), original.message_id());
    }
}
