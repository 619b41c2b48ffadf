//! Shared fixtures of the projector's integration tests: a fresh database and
//! broker topology per test, a writer executing real commands, a publisher
//! standing in for the relay, the expected read model folded from the event
//! store, and the projector run in-process or as its binary.

pub mod fold;
pub mod identity;
pub mod run;
pub mod view;
pub mod writer;

use std::time::{Duration, Instant};

use bus::{ConsumerGroup, Envelope, Publisher};
use infra::event_log::{self, LogPosition};
use infra::settings::{CommonSettings, LogFormat};
use infra::testing::{self, eventually, TestDatabase, TestTopology};
use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use projector::settings::ProjectorSettings;
use sqlx::PgPool;

/// Upper bound of every wait; the tests normally finish far sooner.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// One test's database, broker topology and settings. The queue exists before
/// any projector starts, so events published early wait for it.
pub struct Fixture {
    pub settings: ProjectorSettings,
    pub group: ConsumerGroup,
    publisher: Publisher,
    channel: Channel,
    /// Held open: the channel and the publisher live on it.
    _conn: Connection,
    // Dropped last, in this order: queues and exchange, then the database.
    pub topology: TestTopology,
    pub db: TestDatabase,
}

impl Fixture {
    /// `tune` adjusts the projector's settings (batch size, delivery limit...).
    pub async fn new(tune: impl FnOnce(&mut ProjectorSettings)) -> Self {
        init_logging();
        let db = TestDatabase::create().await;
        let mut settings = ProjectorSettings {
            common: CommonSettings {
                database_url: db.url.clone(),
                database_max_connections: 3,
                amqp_url: testing::amqp_url(),
                amqp_exchange: String::new(),
                amqp_queue_prefix: String::new(),
                log_format: LogFormat::Json,
                migrate_on_start: false,
            },
            projector_addr: "127.0.0.1:0".into(),
            delivery_limit: 10,
            prefetch: 256,
            max_batch: 128,
            retry_base_ms: 10,
        };
        tune(&mut settings);
        let group = settings.consumer_group();
        let topology = TestTopology::new(vec![group.clone()]);
        settings.common.amqp_exchange = topology.topology.exchange.clone();
        settings.common.amqp_queue_prefix = topology.topology.queue_prefix.clone();

        let (conn, channel, publisher) = topology.declare_for_publishing(&group).await;
        Self {
            settings,
            group,
            publisher,
            channel,
            _conn: conn,
            topology,
            db,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
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
    /// stop the projector gracefully and use [`Fixture::assert_all_acked`].
    pub async fn assert_delivered_and_none_dead(&self) {
        let queue = self.queue();
        eventually(TIMEOUT, "every message to be delivered", || async {
            (self.ready(&queue).await == 0).then_some(())
        })
        .await;
        let dead = self.ready(&self.dead_letter_queue()).await;
        assert_eq!(dead, 0, "messages dead-lettered");
    }

    /// Call once the projector has stopped gracefully (it acks or returns
    /// what it holds): checks that every message was acked and none
    /// dead-lettered.
    pub async fn assert_all_acked(&self) {
        let queue = self.queue();
        eventually(TIMEOUT, "the projector's consumer to be gone", || async {
            (self.declare_passive(&queue).await.consumer_count() == 0).then_some(())
        })
        .await;
        assert_eq!(self.ready(&queue).await, 0, "messages left unacked");
        let dead = self.ready(&self.dead_letter_queue()).await;
        assert_eq!(dead, 0, "messages dead-lettered");
    }
}

/// Stands in for the outbox relay: reads committed events in publishing order
/// from where it last stopped.
#[derive(Default)]
pub struct Relay {
    pub position: LogPosition,
}

impl Relay {
    /// Events committed since the last call, in log order. Like the relay,
    /// it reads only below the oldest running transaction (of the whole
    /// cluster: other tests' too), and waits until nothing is held back.
    pub async fn next_events(&mut self, pool: &PgPool) -> Vec<Envelope> {
        let started = Instant::now();
        let mut events = Vec::new();
        loop {
            let batch = event_log::read_committed_after(pool, self.position, 1000)
                .await
                .expect("read the event log");
            if let Some(last) = batch.last() {
                self.position = LogPosition::of(last);
                events.extend(batch);
                continue;
            }
            let held_back = event_log::has_rows_held_back(pool, self.position)
                .await
                .expect("look for held back events");
            if !held_back {
                return events;
            }
            assert!(started.elapsed() < TIMEOUT, "events held back for too long");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Publishes the events committed since the last call; returns them.
    pub async fn forward(&mut self, fixture: &Fixture) -> Vec<Envelope> {
        let events = self.next_events(fixture.pool()).await;
        fixture.publish(&events).await;
        events
    }
}

/// Every committed event in publishing order.
pub async fn committed_events(pool: &PgPool) -> Vec<Envelope> {
    Relay::default().next_events(pool).await
}

/// `reason` of the first `x-death` entry of a dead-lettered message.
pub fn death_reason(message: &BasicGetMessage) -> Option<String> {
    let headers = message.delivery.properties.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(death) = deaths.as_slice().first()? else {
        return None;
    };
    match death.inner().get("reason")? {
        AMQPValue::LongString(reason) => Some(reason.to_string()),
        _ => None,
    }
}

/// Why the consumer dead-lettered a message at once (a permanent failure).
pub fn handler_error(message: &BasicGetMessage) -> Option<String> {
    let headers = message.delivery.properties.headers().as_ref()?;
    match headers.inner().get(bus::DEAD_LETTER_REASON_HEADER)? {
        AMQPValue::LongString(reason) => Some(reason.to_string()),
        _ => None,
    }
}

/// Logs of in-process projectors go to the test output when `TEST_LOG` is set.
fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        infra::telemetry::init(LogFormat::Pretty);
    }
}

/// An aggregate by type and id, as events name it.
pub type AggregateKey = (String, String);

pub fn aggregate_key(aggregate_type: &str, id: uuid::Uuid) -> AggregateKey {
    (aggregate_type.to_owned(), id.to_string())
}

/// Every event twice, except some left out: never an aggregate's last event,
/// and always the first event of each of `forced_gaps`. The choice depends
/// on the seed and the order of `aggregates` only, not on the order
/// concurrent commands happened to commit in.
pub fn deliveries_with_gaps(
    events: &[Envelope],
    aggregates: &[AggregateKey],
    forced_gaps: &[AggregateKey],
    rng: &mut Rng,
) -> Vec<Envelope> {
    let key = |event: &Envelope| (event.aggregate_type.clone(), event.aggregate_id.clone());
    let position = |event: &Envelope| {
        aggregates
            .iter()
            .position(|aggregate| *aggregate == key(event))
            .expect("an event of a test aggregate")
    };
    let mut by_aggregate: Vec<&Envelope> = events.iter().collect();
    by_aggregate.sort_by_key(|event| (position(event), event.sequence));
    let mut deliveries = Vec::new();
    for (index, event) in by_aggregate.iter().enumerate() {
        let is_last = by_aggregate
            .get(index + 1)
            .is_none_or(|next| key(next) != key(event));
        let forced_gap = event.sequence == 1 && forced_gaps.contains(&key(event));
        if is_last || !(forced_gap || rng.below(4) == 0) {
            deliveries.extend([(*event).clone(), (*event).clone()]);
        }
    }
    deliveries
}

/// A small deterministic generator (SplitMix64): reproducible shuffles
/// without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for tests.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}
