//! Shared fixtures of the projector's integration tests: a fresh database and
//! broker topology per test, a writer executing real commands, a publisher
//! standing in for the relay, the expected read model folded from the event
//! store, and the projector run in-process or as its binary.

pub mod fold;
pub mod identity;
pub mod run;
pub mod view;
pub mod writer;

use bus::Envelope;
use infra::event_log::LogPosition;
use infra::testing::{self, TestBroker, TestDatabase};
use projector::settings::ProjectorSettings;
use sqlx::PgPool;

use fold::Views;

pub use infra::testing::{committed_events, death_reason, handler_error, Relay, TIMEOUT};

/// One test's database, broker topology and settings.
pub struct Fixture {
    pub settings: ProjectorSettings,
    // Dropped last, in this order: queues and exchange, then the database.
    pub broker: TestBroker,
    pub db: TestDatabase,
}

impl Fixture {
    /// `tune` adjusts the projector's settings (batch size, delivery limit...).
    pub async fn new(tune: impl FnOnce(&mut ProjectorSettings)) -> Self {
        testing::init_logging();
        let db = TestDatabase::create().await;
        let mut settings = ProjectorSettings {
            common: testing::common_settings(&db, 3),
            projector_addr: "127.0.0.1:0".into(),
            delivery_limit: 10,
            prefetch: 256,
            max_batch: 128,
            retry_base_ms: 10,
        };
        tune(&mut settings);
        let broker = TestBroker::declare(settings.consumer_group(), &mut settings.common).await;
        Self {
            settings,
            broker,
            db,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }
}

/// Small batches: many transactions, each seeing a different mix.
pub fn small_batches(settings: &mut ProjectorSettings) {
    settings.max_batch = 4;
    settings.prefetch = 8;
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

/// Runs the projector on `deliveries` (of the committed `events`), published
/// in small chunks; returns the views once they equal the fold of the event
/// store, the checkpoint is at the last event and every delivery is acked,
/// the late duplicates having changed nothing.
pub async fn project(fx: &Fixture, deliveries: &[Envelope], events: &[Envelope]) -> Views {
    let _projector = run::start_in_process(fx.settings.clone()).await;
    for chunk in deliveries.chunks(7) {
        fx.broker.publish(chunk).await;
    }
    let views = fold::wait_for_fold(fx.pool()).await;
    let last = LogPosition::of(events.last().expect("events"));
    view::wait_for_checkpoint(fx.pool(), last).await;
    fx.broker.assert_delivered_and_none_dead().await;
    assert_eq!(
        Views::read(fx.pool()).await,
        views,
        "late duplicates changed rows"
    );
    views
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
