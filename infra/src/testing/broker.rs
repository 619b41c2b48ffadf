//! The test's end of the broker: publishes as the relay would, looks into
//! the consumer group's queues and takes its dead letters.

use bus::{ConsumerGroup, Envelope, Publisher};
use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

use super::{eventually, TestTopology, TIMEOUT};
use crate::settings::CommonSettings;

/// A consumer group declared on a topology of the test's own, with a
/// channel and a publisher (with confirms) on it. The queues exist before
/// any service starts, so events published early wait for it.
pub struct TestBroker {
    pub group: ConsumerGroup,
    publisher: Publisher,
    channel: Channel,
    /// Held open: the channel and the publisher live on it.
    _conn: Connection,
    // Dropped last: the queues and the exchange are deleted.
    pub topology: TestTopology,
}

impl TestBroker {
    /// Declares `group` and points `common` at the test's exchange and queues.
    pub async fn declare(group: ConsumerGroup, common: &mut CommonSettings) -> Self {
        let topology = TestTopology::new(vec![group.clone()]);
        common.amqp_exchange = topology.topology.exchange.clone();
        common.amqp_queue_prefix = topology.topology.queue_prefix.clone();
        let (conn, channel, publisher) = topology.declare_for_publishing(&group).await;
        Self {
            group,
            publisher,
            channel,
            _conn: conn,
            topology,
        }
    }

    /// Publishes and waits for the broker's confirms.
    pub async fn publish(&self, events: &[Envelope]) {
        self.publisher
            .publish_batch(events)
            .await
            .expect("publish events");
    }

    pub fn queue(&self) -> String {
        self.topology.topology.queue_name(&self.group)
    }

    pub fn dead_letter_queue(&self) -> String {
        self.topology.topology.dead_letter_queue_name(&self.group)
    }

    /// Messages ready (not in flight) in `queue`.
    pub async fn ready(&self, queue: &str) -> u32 {
        self.declare_passive(queue).await.message_count()
    }

    async fn declare_passive(&self, queue: &str) -> lapin::Queue {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        self.channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .expect("passive queue declare")
    }

    /// Takes (and acks) the next dead-lettered message, if any.
    pub async fn take_dead_letter(&self) -> Option<BasicGetMessage> {
        let message = self
            .channel
            .basic_get(
                self.dead_letter_queue().as_str().into(),
                BasicGetOptions::default(),
            )
            .await
            .expect("basic_get")?;
        message
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("ack dead letter");
        Some(message)
    }

    /// Waits until the broker has delivered every message of the queue at
    /// least once; then checks that none was dead-lettered. The last
    /// deliveries may still be unacked (AMQP cannot tell): for an exact check
    /// stop the service gracefully and use [`TestBroker::assert_all_acked`].
    pub async fn assert_delivered_and_none_dead(&self) {
        let queue = self.queue();
        eventually(TIMEOUT, "every message to be delivered", || async {
            (self.ready(&queue).await == 0).then_some(())
        })
        .await;
        let dead = self.ready(&self.dead_letter_queue()).await;
        assert_eq!(dead, 0, "messages dead-lettered");
    }

    /// Call once the service has stopped gracefully (it acks or returns
    /// what it holds): checks that every message was acked and none
    /// dead-lettered.
    pub async fn assert_all_acked(&self) {
        let queue = self.queue();
        eventually(TIMEOUT, "the service's consumer to be gone", || async {
            (self.declare_passive(&queue).await.consumer_count() == 0).then_some(())
        })
        .await;
        assert_eq!(self.ready(&queue).await, 0, "messages left unacked");
        let dead = self.ready(&self.dead_letter_queue()).await;
        assert_eq!(dead, 0, "messages dead-lettered");
    }
}
