use std::task::Poll;

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::ShortString,
    BasicProperties, Channel, Confirmation, Connection, PublisherConfirm,
};
use tokio::sync::Mutex;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::message::{CONTENT_TYPE, PERSISTENT};
use crate::{topology::short, BusError, Envelope, Message};

/// Publishes envelopes to the topic exchange on a channel in publisher-confirm mode.
///
/// Sending is serialized internally (a batch's messages stay together and in
/// order), so one publisher can be shared; waiting for confirms is not.
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
        self.send_batch(events).await?.confirmed().await
    }

    /// Hands every event to the broker in order without waiting for its
    /// confirms: the returned batch resolves once all are confirmed. Batches
    /// sent one after another are confirmed in the order sent.
    pub async fn send_batch(&self, events: &[Envelope]) -> Result<PendingBatch, BusError> {
        let messages = events
            .iter()
            .map(Message::of)
            .collect::<Result<Vec<_>, _>>()?;
        self.send_messages(messages).await
    }

    /// [`Publisher::send_batch`] of messages built already.
    pub async fn send_messages(&self, messages: Vec<Message>) -> Result<PendingBatch, BusError> {
        if messages.is_empty() {
            return Ok(PendingBatch {
                confirms: Vec::new(),
            });
        }
        let _guard = self.publishing.lock().await;
        let exchange = short(&self.exchange)?;
        let mut writes = Vec::with_capacity(messages.len());
        for message in messages {
            // The first poll of a publish queues its frames and takes its
            // delivery tag; what is left is waiting for the connection to
            // write them. Waiting for each write in turn costs a wake-up of
            // the connection's I/O loop per message, so all are queued first,
            // in order, and their writes awaited after.
            let event_id = message.event_id;
            let mut write = Box::pin(self.publish_one(&exchange, message));
            let done = match futures_util::poll!(write.as_mut()) {
                Poll::Ready(confirm) => Some(confirm?),
                Poll::Pending => None,
            };
            writes.push((event_id, write, done));
        }
        let mut confirms = Vec::with_capacity(writes.len());
        for (event_id, write, done) in writes {
            let confirm = match done {
                Some(confirm) => confirm,
                None => write.await?,
            };
            confirms.push((event_id, confirm));
        }
        Ok(PendingBatch { confirms })
    }

    /// Publishes one persistent JSON message that is not an event (a signed
    /// checkpoint of the log) under `routing_key`, and waits for its confirm.
    pub async fn publish_document(
        &self,
        routing_key: &str,
        message_id: &str,
        body: &[u8],
    ) -> Result<(), BusError> {
        self.send_document(routing_key, message_id, body)
            .await?
            .confirmed()
            .await
    }

    /// [`Publisher::publish_document`] without waiting for its confirm.
    pub async fn send_document(
        &self,
        routing_key: &str,
        message_id: &str,
        body: &[u8],
    ) -> Result<PendingDocument, BusError> {
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type(CONTENT_TYPE.into())
            .with_message_id(short(message_id)?);
        let _guard = self.publishing.lock().await;
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
        Ok(PendingDocument {
            message_id: message_id.to_owned(),
            confirm,
        })
    }

    /// Whether the underlying channel (and so the connection) is usable.
    pub fn is_connected(&self) -> bool {
        self.channel.status().connected()
    }

    async fn publish_one(
        &self,
        exchange: &ShortString,
        message: Message,
    ) -> Result<PublisherConfirm, BusError> {
        Ok(self
            .channel
            .basic_publish(
                exchange.clone(),
                message.routing_key,
                BasicPublishOptions::default(),
                &message.body,
                message.properties,
            )
            .await?)
    }
}

/// A document handed to the broker whose confirm may be outstanding.
#[must_use = "nothing is known to be published until its confirm is awaited"]
pub struct PendingDocument {
    message_id: String,
    confirm: PublisherConfirm,
}

impl PendingDocument {
    /// Waits for its confirm: `Ok` once the broker has it.
    pub async fn confirmed(self) -> Result<(), BusError> {
        match self.confirm.await? {
            Confirmation::Ack(None) => Ok(()),
            _ => Err(BusError::DocumentNotConfirmed {
                message_id: self.message_id,
            }),
        }
    }
}

/// Events handed to the broker whose confirms may be outstanding.
#[must_use = "nothing is known to be published until its confirms are awaited"]
pub struct PendingBatch {
    confirms: Vec<(Uuid, PublisherConfirm)>,
}

impl PendingBatch {
    pub fn len(&self) -> usize {
        self.confirms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.confirms.is_empty()
    }

    /// Waits for every confirm. `Ok` means every event was confirmed
    /// (persisted by the broker); else the first failure.
    pub async fn confirmed(self) -> Result<(), BusError> {
        let count = self.confirms.len();
        let mut first_error = None;
        for (event_id, confirm) in self.confirms {
            if let Err(err) = check_confirm(event_id, confirm).await {
                warn!(%event_id, error = %err, "event not confirmed by broker");
                first_error.get_or_insert(err);
            }
        }
        debug!(count, "batch confirmed");
        first_error.map_or(Ok(()), Err)
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
