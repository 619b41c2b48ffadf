//! Operator tools for a consumer group's dead-letter queue: count what is
//! there, and move it back to the group's queue once the cause is fixed.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::Connection;
use uuid::Uuid;

use crate::publisher::check_confirm;
use crate::topology::short;
use crate::{BusError, ConsumerGroup, Topology};

/// Messages waiting in the group's dead-letter queue.
pub async fn count_dead_letters(
    conn: &Connection,
    topology: &Topology,
    group: &ConsumerGroup,
) -> Result<u32, BusError> {
    let channel = conn.create_channel().await?;
    let queue = channel
        .queue_declare(
            short(&topology.dead_letter_queue_name(group))?,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(queue.message_count())
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
        let message_id = message
            .properties
            .message_id()
            .as_ref()
            .and_then(|id| Uuid::parse_str(id.as_str()).ok())
            .unwrap_or_default();
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
