use lapin::{
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
    Channel, Connection, ConnectionProperties, ExchangeKind,
};

use crate::BusError;

/// Names of the exchange and queues used by the service.
#[derive(Clone, Debug)]
pub struct Topology {
    /// Durable topic exchange the outbox relay publishes to.
    pub exchange: String,
    /// Prefix of every queue name (e.g. "identity.").
    pub queue_prefix: String,
}

/// A set of competing consumers sharing one quorum queue.
#[derive(Clone, Debug)]
pub struct ConsumerGroup {
    /// e.g. "projector.read_models".
    pub name: String,
    /// Topic binding keys, e.g. `["order.*"]`.
    pub binding_keys: Vec<String>,
    /// Deliveries after which RabbitMQ dead-letters a message (`x-delivery-limit`).
    pub delivery_limit: u32,
}

impl Topology {
    pub fn queue_name(&self, group: &ConsumerGroup) -> String {
        format!("{}{}", self.queue_prefix, group.name)
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.exchange)
    }

    pub fn dead_letter_queue_name(&self, group: &ConsumerGroup) -> String {
        dead_letter_queue_of(&self.queue_name(group))
    }

    /// Declares the durable topic exchange and its durable direct dead-letter exchange.
    pub async fn declare_exchange(&self, ch: &Channel) -> Result<(), BusError> {
        declare_durable_exchange(ch, &self.exchange, ExchangeKind::Topic).await?;
        declare_durable_exchange(ch, &self.dead_letter_exchange(), ExchangeKind::Direct).await
    }

    /// Declares the group's quorum queue (with delivery limit and dead-lettering), its
    /// bindings, and its dead-letter queue. Idempotent.
    pub async fn declare_group(&self, ch: &Channel, group: &ConsumerGroup) -> Result<(), BusError> {
        let queue = self.queue_name(group);
        let dead_queue = self.dead_letter_queue_name(group);
        let dlx = self.dead_letter_exchange();

        declare_quorum_queue(ch, &dead_queue, FieldTable::default()).await?;
        bind(ch, &dead_queue, &dlx, &queue).await?;

        declare_quorum_queue(ch, &queue, self.group_arguments(group)).await?;
        for key in &group.binding_keys {
            bind(ch, &queue, &self.exchange, key).await?;
        }
        Ok(())
    }

    /// Deletes the group's queue and dead-letter queue (messages included).
    pub async fn delete_group(&self, ch: &Channel, group: &ConsumerGroup) -> Result<(), BusError> {
        for queue in [self.queue_name(group), self.dead_letter_queue_name(group)] {
            ch.queue_delete(short(&queue)?, QueueDeleteOptions::default())
                .await?;
        }
        Ok(())
    }

    /// Deletes the exchange and the dead-letter exchange.
    pub async fn delete_exchange(&self, ch: &Channel) -> Result<(), BusError> {
        for exchange in [self.exchange.clone(), self.dead_letter_exchange()] {
            ch.exchange_delete(short(&exchange)?, ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }

    fn group_arguments(&self, group: &ConsumerGroup) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(group.delivery_limit)),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            long_string(&self.dead_letter_exchange()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            long_string(&self.queue_name(group)),
        );
        args
    }
}

/// The dead-letter queue of `queue`: where the broker dead-letters its
/// messages, and where the consumer puts its permanent failures.
pub(crate) fn dead_letter_queue_of(queue: &str) -> String {
    format!("{queue}.dead")
}

/// Messages ready in `queue` (not those delivered and unacknowledged), by a
/// passive declare on a channel of its own: the queue is neither created nor
/// changed, and a missing queue is an error.
pub async fn ready_messages(conn: &Connection, queue: &str) -> Result<u32, BusError> {
    let channel = conn.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel
        .queue_declare(short(queue)?, passive, FieldTable::default())
        .await;
    if channel.status().connected() {
        let _ = channel.close(200, "OK".into()).await;
    }
    Ok(declared?.message_count())
}

/// Opens an AMQP connection on the current tokio runtime.
pub async fn connect(url: &str) -> Result<Connection, BusError> {
    Ok(Connection::connect(url, ConnectionProperties::default()).await?)
}

/// Converts to an AMQP short string (max 255 bytes) without panicking.
pub(crate) fn short(value: &str) -> Result<ShortString, BusError> {
    ShortString::try_new(value).map_err(|_| BusError::NameTooLong(value.to_owned()))
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

async fn declare_durable_exchange(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), BusError> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(short(name)?, kind, options, FieldTable::default())
        .await?;
    Ok(())
}

async fn declare_quorum_queue(
    ch: &Channel,
    name: &str,
    mut args: FieldTable,
) -> Result<(), BusError> {
    args.insert("x-queue-type".into(), long_string("quorum"));
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(short(name)?, options, args).await?;
    Ok(())
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), BusError> {
    ch.queue_bind(
        short(queue)?,
        short(exchange)?,
        short(key)?,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let topology = Topology {
            exchange: "identity.events".into(),
            queue_prefix: "identity.".into(),
        };
        let group = ConsumerGroup {
            name: "projector.read_models".into(),
            binding_keys: vec!["thing.*".into()],
            delivery_limit: 5,
        };
        assert_eq!(
            topology.queue_name(&group),
            "identity.projector.read_models"
        );
        assert_eq!(topology.dead_letter_exchange(), "identity.events.dlx");
        assert_eq!(
            topology.dead_letter_queue_name(&group),
            "identity.projector.read_models.dead"
        );
    }

    #[test]
    fn short_rejects_long_names() {
        assert!(short(&"a".repeat(255)).is_ok());
        assert!(matches!(
            short(&"a".repeat(256)),
            Err(BusError::NameTooLong(_))
        ));
    }
}
