//! Shared fixtures for the integration tests (real RabbitMQ).

use std::{
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

use bus::{ConsumerGroup, Envelope, EventMetadata, Topology};
use chrono::Utc;
use lapin::{
    message::BasicGetMessage,
    options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions},
    types::FieldTable,
    Channel, Connection,
};
use uuid::Uuid;

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A unique exchange + consumer group, deleted when dropped.
pub struct Fixture {
    pub conn: Connection,
    pub channel: Channel,
    pub topology: Topology,
    pub group: ConsumerGroup,
}

impl Fixture {
    pub async fn new(delivery_limit: u32) -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let topology = Topology {
            exchange: format!("test.{id}.events"),
            queue_prefix: format!("test.{id}."),
        };
        let group = ConsumerGroup {
            name: "test.group".into(),
            binding_keys: vec!["thing.*".into()],
            delivery_limit,
        };
        let conn = bus::connect(&amqp_url()).await.expect("connect");
        let channel = conn.create_channel().await.expect("channel");
        topology.declare_exchange(&channel).await.expect("exchange");
        topology
            .declare_group(&channel, &group)
            .await
            .expect("group");
        Self {
            conn,
            channel,
            topology,
            group,
        }
    }

    pub fn queue(&self) -> String {
        self.topology.queue_name(&self.group)
    }

    pub fn dead_queue(&self) -> String {
        self.topology.dead_letter_queue_name(&self.group)
    }

    /// Ready (not in flight) messages in a queue.
    pub async fn ready(&self, queue: &str) -> u32 {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        self.channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .expect("passive declare")
            .message_count()
    }

    /// Takes (and acks) one message from a queue.
    pub async fn get(&self, queue: &str) -> Option<BasicGetMessage> {
        let message = self
            .channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic_get")?;
        message
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
        Some(message)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let topology = self.topology.clone();
        let group = self.group.clone();
        // Drop cannot await: clean up on a fresh runtime in another thread.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let conn = bus::connect(&amqp_url()).await.expect("connect");
                let channel = conn.create_channel().await.expect("channel");
                topology
                    .delete_group(&channel, &group)
                    .await
                    .expect("delete group");
                topology
                    .delete_exchange(&channel)
                    .await
                    .expect("delete exchange");
                let _ = conn.close(200, "OK".into()).await;
            });
        });
        if cleanup.join().is_err() && !std::thread::panicking() {
            panic!("test cleanup failed");
        }
    }
}

pub fn event(aggregate_id: &str, sequence: i64, event_type: &str) -> Envelope {
    Envelope {
        event_id: Uuid::new_v4(),
        global_position: sequence,
        transaction_id: 1000 + sequence,
        aggregate_type: "thing".into(),
        aggregate_id: aggregate_id.into(),
        sequence,
        event_type: event_type.into(),
        event_version: "1".into(),
        payload: serde_json::json!({ "n": sequence }),
        metadata: EventMetadata {
            api_key_id: None,
            actor_id: Some("admin".into()),
            correlation_id: Some(format!("corr-{sequence}")),
            causation_id: Some(format!("cause-{sequence}")),
            request_ip: None,
            user_agent: None,
            occurred_at: Some(Utc::now()),
        },
        recorded_at: Utc::now(),
    }
}

pub fn events(count: i64) -> Vec<Envelope> {
    (1..=count)
        .map(|n| event(&format!("t-{}", n % 3), n, "thing.happened"))
        .collect()
}

/// Polls `condition` until it holds; panics after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < timeout, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Records every handler call (the event ids of each batch).
#[derive(Default)]
pub struct Calls(Mutex<Vec<Vec<Uuid>>>);

impl Calls {
    pub fn record(&self, events: &[Envelope]) {
        let ids = events.iter().map(|e| e.event_id).collect();
        self.0.lock().unwrap().push(ids);
    }

    pub fn all(&self) -> Vec<Vec<Uuid>> {
        self.0.lock().unwrap().clone()
    }

    /// Calls whose batch was exactly `[id]`: one per delivery of a failing event.
    pub fn single(&self, id: Uuid) -> usize {
        self.all().iter().filter(|call| call[..] == [id]).count()
    }
}

/// `reason` and `count` of the first `x-death` entry of a dead-lettered message.
pub fn first_death(properties: &lapin::BasicProperties) -> Option<(String, i64)> {
    use lapin::types::AMQPValue;
    let headers = properties.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(death) = deaths.as_slice().first()? else {
        return None;
    };
    let reason = match death.inner().get("reason")? {
        AMQPValue::LongString(reason) => reason.to_string(),
        _ => return None,
    };
    let count = match death.inner().get("count")? {
        AMQPValue::LongLongInt(count) => *count,
        _ => return None,
    };
    Some((reason, count))
}

/// The reason the consumer gave a message it dead-lettered itself.
pub fn reason_header(properties: &lapin::BasicProperties) -> Option<String> {
    use lapin::types::AMQPValue;
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(bus::DEAD_LETTER_REASON_HEADER)? {
        AMQPValue::LongString(reason) => Some(reason.to_string()),
        _ => None,
    }
}

/// Runs `consumer` and `driver` side by side (driver must trigger the shutdown),
/// failing the test if both are not done within `timeout`.
pub async fn run_with<C, D>(timeout: Duration, consumer: C, driver: D) -> C::Output
where
    C: Future,
    D: Future<Output = ()>,
{
    let both = async { tokio::join!(consumer, driver).0 };
    tokio::time::timeout(timeout, both)
        .await
        .expect("consumer did not stop in time")
}
