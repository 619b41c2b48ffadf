//! A consumer group's dead-letter queue: the consumer puts a permanent
//! failure there with its reason; operators list what is there (why each
//! failed, how many times), move it back to the group's queue once the
//! cause is fixed, or purge it.

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
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
/// The broker's record of each time a message was dead-lettered.
const DEATH_HEADER: &str = "x-death";
/// Times the consumer dead-lettered a message itself (a replay keeps it).
const HANDLER_DEATHS_HEADER: &str = "x-handler-deaths";
/// The `x-death` reason of a message that used up the queue's delivery limit.
const DELIVERY_LIMIT_REASON: &str = "delivery_limit";
/// How long [`sweep`] waits for the next of the messages it was told are
/// waiting before it settles for fewer (another reader took them).
const TAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What [`sweep`] does with a dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposal {
    /// Leave it where it is, in its place.
    Keep,
    /// Move it back to the group's queue (without its failure's headers).
    Replay,
    /// Delete it.
    Purge,
}

/// Describes the first `max` dead letters of `group` in queue order and
/// disposes of each as `decide` says; returns them and what it did with each.
///
/// It reads every message waiting, with a prefetch of exactly that many so
/// the broker hands over no more; cancels the consumer before acting, so
/// nothing new arrives meanwhile; acks a replayed message only once the
/// broker confirmed its copy; and finally returns every kept message at
/// once (`nack` multiple, requeue). The broker puts returned messages at
/// the back of the queue, so returning all of them, not just the first
/// `max`, is what leaves them in their order (a message dead-lettered
/// during the sweep lands before them).
/// A crash part-way returns the unacknowledged messages too: a dead letter
/// is never lost, at worst replayed twice, which consumers tolerate.
pub async fn sweep(
    conn: &Connection,
    topology: &Topology,
    group: &ConsumerGroup,
    max: usize,
    mut decide: impl FnMut(&DeadLetter) -> Disposal,
) -> Result<Vec<(DeadLetter, Disposal)>, BusError> {
    let dead_queue = topology.dead_letter_queue_name(group);
    let waiting = crate::ready_messages(conn, &dead_queue).await?;
    if waiting > u32::from(u16::MAX) {
        return Err(BusError::TooManyDeadLetters {
            queue: dead_queue,
            waiting,
        });
    }
    if waiting == 0 || max == 0 {
        return Ok(Vec::new());
    }
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let deliveries = take(&channel, &dead_queue, waiting as usize).await?;
    let mut swept = Vec::with_capacity(max.min(deliveries.len()));
    for delivery in deliveries.iter().take(max) {
        let letter = DeadLetter::of(delivery, group.delivery_limit);
        let disposal = decide(&letter);
        dispose(&channel, delivery, disposal, &topology.queue_name(group)).await?;
        swept.push((letter, disposal));
    }
    let kept = return_the_kept(&deliveries, &swept).await?;
    let _ = channel.close(200, "OK".into()).await;
    until_back(conn, &dead_queue, kept).await?;
    Ok(swept)
}

/// Consumes `wanted` deliveries (fewer if the queue runs dry), then cancels.
async fn take(channel: &Channel, queue: &str, wanted: usize) -> Result<Vec<Delivery>, BusError> {
    let prefetch = u16::try_from(wanted).unwrap_or(u16::MAX);
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            short(queue)?,
            short("")?,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut deliveries = Vec::with_capacity(wanted);
    while deliveries.len() < wanted {
        match tokio::time::timeout(TAKE_TIMEOUT, consumer.next()).await {
            Ok(Some(delivery)) => deliveries.push(delivery?),
            Ok(None) | Err(_) => break,
        }
    }
    channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await?;
    Ok(deliveries)
}

async fn dispose(
    channel: &Channel,
    delivery: &Delivery,
    disposal: Disposal,
    queue: &str,
) -> Result<(), BusError> {
    match disposal {
        Disposal::Keep => return Ok(()),
        Disposal::Replay => {
            let confirm = channel
                .basic_publish(
                    short("")?,
                    short(queue)?,
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &delivery.data,
                    without_failure(&delivery.properties),
                )
                .await?;
            check_confirm(message_id(&delivery.properties), confirm).await?;
        }
        Disposal::Purge => {}
    }
    delivery.ack(BasicAckOptions::default()).await?;
    Ok(())
}

/// Returns every delivery not disposed of to the queue in one `nack`
/// (multiple, requeue) of the last delivery tag: the others are settled.
/// Returns how many went back.
async fn return_the_kept(
    deliveries: &[Delivery],
    swept: &[(DeadLetter, Disposal)],
) -> Result<u32, BusError> {
    let disposed = swept
        .iter()
        .filter(|(_, disposal)| *disposal != Disposal::Keep)
        .count();
    let kept = u32::try_from(deliveries.len() - disposed).unwrap_or(u32::MAX);
    match deliveries.last() {
        Some(last) if kept > 0 => {
            let options = BasicNackOptions {
                multiple: true,
                requeue: true,
            };
            last.nack(options).await?;
            Ok(kept)
        }
        _ => Ok(0),
    }
}

/// Waits (at most [`TAKE_TIMEOUT`]) until the broker shows the `kept`
/// messages in the queue again: it requeues them after the `nack` returns,
/// and whoever looks next should see them.
async fn until_back(conn: &Connection, queue: &str, kept: u32) -> Result<(), BusError> {
    let started = std::time::Instant::now();
    while crate::ready_messages(conn, queue).await? < kept && started.elapsed() < TAKE_TIMEOUT {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

/// A dead letter as an operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The event id (`message_id`), if the message has one.
    pub message_id: Option<String>,
    /// Its event type: the envelope's, or for a message that is no
    /// envelope the routing key it was published with, if known.
    pub event_type: Option<String>,
    /// Why: the consumer's reason for a permanent failure, or the broker's
    /// (`delivery_limit`, `rejected`...) with the queue it died in.
    pub reason: String,
    /// How many times it failed before it was last dead-lettered: the
    /// first delivery and the queue's delivery limit of redeliveries when
    /// the broker gave up on it, 1 for a permanent failure.
    pub failures: i64,
    /// Times it was dead-lettered (more than 1 after a replay that failed again).
    pub deaths: i64,
}

impl DeadLetter {
    fn of(delivery: &Delivery, delivery_limit: u32) -> Self {
        let headers = delivery
            .properties
            .headers()
            .as_ref()
            .map(|headers| headers.inner().clone())
            .unwrap_or_default();
        let death = first_death(&headers);
        let deaths = broker_deaths(&headers)
            + headers
                .get(HANDLER_DEATHS_HEADER)
                .and_then(integer)
                .unwrap_or(0);
        let handler_error = headers.get(DEAD_LETTER_REASON_HEADER).and_then(text);
        let by_delivery_limit = handler_error.is_none()
            && death.and_then(|death| death.inner().get("reason").and_then(text))
                == Some(DELIVERY_LIMIT_REASON.to_owned());
        let failures = match by_delivery_limit {
            true => i64::from(delivery_limit) + 1,
            false => 1,
        };
        let reason = match (handler_error, death) {
            (Some(reason), _) => reason,
            (None, Some(death)) => broker_reason(death),
            (None, None) => "unknown".to_owned(),
        };
        Self {
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string()),
            event_type: event_type(&delivery.data, death),
            reason,
            failures,
            deaths: deaths.max(1),
        }
    }
}

/// Times the broker dead-lettered the message: the counts of every
/// `x-death` entry (one per queue and reason).
fn broker_deaths(headers: &std::collections::BTreeMap<ShortString, AMQPValue>) -> i64 {
    match headers.get(DEATH_HEADER) {
        Some(AMQPValue::FieldArray(deaths)) => deaths
            .as_slice()
            .iter()
            .filter_map(|death| match death {
                AMQPValue::FieldTable(death) => integer(death.inner().get("count")?),
                _ => None,
            })
            .sum(),
        _ => 0,
    }
}

fn first_death(
    headers: &std::collections::BTreeMap<ShortString, AMQPValue>,
) -> Option<&FieldTable> {
    match headers.get(DEATH_HEADER)? {
        AMQPValue::FieldArray(deaths) => match deaths.as_slice().first()? {
            AMQPValue::FieldTable(death) => Some(death),
            _ => None,
        },
        _ => None,
    }
}

fn event_type(body: &[u8], death: Option<&FieldTable>) -> Option<String> {
    if let Ok(envelope) = crate::Envelope::from_json(body) {
        return Some(envelope.event_type);
    }
    match death?.inner().get("routing-keys")? {
        AMQPValue::FieldArray(keys) => keys.as_slice().first().and_then(text),
        _ => None,
    }
}

/// `delivery_limit in <queue>`, from an `x-death` entry.
fn broker_reason(death: &FieldTable) -> String {
    let field = |name: &str| death.inner().get(name).and_then(text);
    let reason = field("reason").unwrap_or_else(|| "unknown".to_owned());
    match field("queue") {
        Some(queue) => format!("{reason} in {queue}"),
        None => reason,
    }
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(text.to_string()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    }
}

fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        _ => None,
    }
}

/// The properties of a replayed copy: as published, without the headers of
/// its failure (the reason, the delivery count), so a new failure is told
/// anew. `x-death` stays: the broker counts deaths across replays.
fn without_failure(properties: &BasicProperties) -> BasicProperties {
    let mut headers = properties
        .headers()
        .as_ref()
        .map(|headers| headers.inner().clone())
        .unwrap_or_default();
    headers.remove(DELIVERY_COUNT_HEADER);
    headers.remove(DEAD_LETTER_REASON_HEADER);
    properties.clone().with_headers(FieldTable::from(headers))
}

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
    let deaths = headers.get(HANDLER_DEATHS_HEADER).and_then(integer);
    headers.insert(
        HANDLER_DEATHS_HEADER.into(),
        AMQPValue::LongLongInt(deaths.unwrap_or(0) + 1),
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

/// Moves up to `max` dead letters back to the group's queue, in their
/// order (see [`sweep`]). Returns how many moved.
pub async fn replay_dead_letters(
    conn: &Connection,
    topology: &Topology,
    group: &ConsumerGroup,
    max: usize,
) -> Result<usize, BusError> {
    let swept = sweep(conn, topology, group, max, |_| Disposal::Replay).await?;
    Ok(swept.len())
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
        assert_eq!(copied[HANDLER_DEATHS_HEADER], AMQPValue::LongLongInt(1));
        let again = with_reason(&copy, "still bad");
        let again = again.headers().as_ref().unwrap().inner();
        assert_eq!(again[HANDLER_DEATHS_HEADER], AMQPValue::LongLongInt(2));
    }

    #[test]
    fn a_replayed_copy_loses_the_failure_but_keeps_the_deaths() {
        let failed = with_reason(&BasicProperties::default(), "bad payload");
        let replayed = without_failure(&failed);
        let headers = replayed.headers().as_ref().unwrap().inner();
        assert!(!headers.contains_key(DEAD_LETTER_REASON_HEADER));
        assert_eq!(headers[HANDLER_DEATHS_HEADER], AMQPValue::LongLongInt(1));
    }
}
