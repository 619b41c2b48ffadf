use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, Confirmation, Connection, PublisherConfirm,
};
use tokio::sync::Mutex;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::{topology::short, BusError, Envelope};

/// Publishes envelopes to the topic exchange on a channel in publisher-confirm mode.
///
/// `publish_batch` calls are serialized internally, so one publisher can be shared.
pub struct Publisher {
    channel: Channel,
    exchange: String,
    publishing: Mutex<()>,
}

impl Publisher {
    /// Opens a channel on `conn` and puts it in confirm mode.
    pub async fn new(conn: &Connection, exchange: &str) -> Result<Self, BusError> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            exchange: exchange.to_owned(),
            publishing: Mutex::new(()),
        })
    }

    /// Publishes every event (routing key = event type), then waits for all broker
    /// confirms. `Ok` means every event was confirmed (persisted by the broker).
    pub async fn publish_batch(&self, events: &[Envelope]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let _guard = self.publishing.lock().await;
        let exchange = short(&self.exchange)?;
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let confirm = self.publish_one(&exchange, event).await?;
            pending.push((event.event_id, confirm));
        }
        let mut first_error = None;
        for (event_id, confirm) in pending {
            if let Err(err) = check_confirm(event_id, confirm).await {
                warn!(%event_id, error = %err, "event not confirmed by broker");
                first_error.get_or_insert(err);
            }
        }
        debug!(count = events.len(), "batch published and confirmed");
        first_error.map_or(Ok(()), Err)
    }

    /// Publishes one persistent JSON message that is not an event (a signed
    /// checkpoint of the log) under `routing_key`, and waits for its confirm.
    pub async fn publish_document(
        &self,
        routing_key: &str,
        message_id: &str,
        body: &[u8],
    ) -> Result<(), BusError> {
        let _guard = self.publishing.lock().await;
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(short(message_id)?);
        let confirm = self
            .channel
            .basic_publish(
                short(&self.exchange)?,
                short(routing_key)?,
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await?;
        match confirm.await? {
            Confirmation::Ack(None) => Ok(()),
            _ => Err(BusError::DocumentNotConfirmed {
                message_id: message_id.to_owned(),
            }),
        }
    }

    /// Whether the underlying channel (and so the connection) is usable.
    pub fn is_connected(&self) -> bool {
        self.channel.status().connected()
    }

    async fn publish_one(
        &self,
        exchange: &ShortString,
        event: &Envelope,
    ) -> Result<PublisherConfirm, BusError> {
        Ok(self
            .channel
            .basic_publish(
                exchange.clone(),
                short(&event.routing_key())?,
                BasicPublishOptions::default(),
                &event.to_json(),
                properties(event),
            )
            .await?)
    }
}

pub(crate) async fn check_confirm(
    event_id: Uuid,
    confirm: PublisherConfirm,
) -> Result<(), BusError> {
    match confirm.await? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            Err(BusError::Returned {
                event_id,
                reply_code: returned.reply_code,
                reply_text: returned.reply_text.to_string(),
            })
        }
        Confirmation::Nack(None) => Err(BusError::Nacked { event_id }),
        Confirmation::NotRequested => Err(BusError::NotConfirmed { event_id }),
    }
}

/// AMQP properties of an event message (persistent JSON, ids and tracing headers).
fn properties(event: &Envelope) -> BasicProperties {
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(event.event_id.to_string().into())
        .with_timestamp(u64::try_from(event.recorded_at.timestamp()).unwrap_or(0))
        .with_headers(headers(event));
    if let Ok(kind) = ShortString::try_new(event.event_type.as_str()) {
        props = props.with_type(kind);
    }
    let correlation = event.metadata.correlation_id.as_deref();
    if let Some(Ok(correlation)) = correlation.map(ShortString::try_new) {
        props = props.with_correlation_id(correlation);
    }
    props
}

fn headers(event: &Envelope) -> FieldTable {
    let mut headers = FieldTable::default();
    let mut text = |key: &str, value: &str| {
        headers.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
    };
    if let Some(correlation) = &event.metadata.correlation_id {
        text("correlation_id", correlation);
    }
    if let Some(causation) = &event.metadata.causation_id {
        text("causation_id", causation);
    }
    text("aggregate_type", &event.aggregate_type);
    text("aggregate_id", &event.aggregate_id);
    headers.insert("sequence".into(), AMQPValue::LongLongInt(event.sequence));
    headers.insert(
        "global_position".into(),
        AMQPValue::LongLongInt(event.global_position),
    );
    headers
}
