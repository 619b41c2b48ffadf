//! A queue bound to every routing key, for tests that count what was
//! published.

use std::time::Duration;

use bus::{ConsumerGroup, Envelope};
use lapin::options::{BasicAckOptions, BasicGetOptions};

use super::TIMEOUT;

/// A consumer group bound to every event: the tap's queue.
pub fn tap_group() -> ConsumerGroup {
    ConsumerGroup {
        name: "tap".into(),
        binding_keys: vec!["#".into()],
        delivery_limit: 10,
    }
}

/// Takes (and acks) exactly `count` messages from `queue`, in order, then
/// checks that no further one arrives within a short while.
pub async fn take_exactly(channel: &lapin::Channel, queue: &str, count: usize) -> Vec<Envelope> {
    let taken = take_within(channel, queue, count, TIMEOUT).await;
    assert_eq!(taken.len(), count, "only {} messages", taken.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        take_one(channel, queue).await.is_none(),
        "more than {count} messages published"
    );
    taken
}

/// Takes (and acks) up to `count` messages from `queue`, in order, waiting
/// at most `within` for them; returns what arrived.
pub async fn take_within(
    channel: &lapin::Channel,
    queue: &str,
    count: usize,
    within: Duration,
) -> Vec<Envelope> {
    let mut taken = Vec::new();
    let deadline = std::time::Instant::now() + within;
    while taken.len() < count && std::time::Instant::now() < deadline {
        match take_one(channel, queue).await {
            Some(envelope) => taken.push(envelope),
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    taken
}

/// The next event on `queue`; signed checkpoints (not events) are taken and
/// passed over.
async fn take_one(channel: &lapin::Channel, queue: &str) -> Option<Envelope> {
    loop {
        let message = channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic_get")?;
        message.ack(BasicAckOptions::default()).await.expect("ack");
        if message.routing_key.as_str() != crate::integrity::CHECKPOINT_ROUTING_KEY {
            return Some(Envelope::from_json(&message.data).expect("an envelope"));
        }
    }
}
