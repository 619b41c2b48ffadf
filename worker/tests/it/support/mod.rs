//! Shared fixtures of the worker's integration tests: a fresh database and
//! broker topology per test, real commands executed on the event store, a
//! publisher standing in for the relay, and the worker run in-process or as
//! its binary.

pub mod run;

use std::time::{Duration, Instant};

use bus::{ConsumerGroup, Envelope, EventMetadata, Publisher};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use domain::{
    DisplayName, Email, EventType, PasswordHash, RefreshTokenHash, Session, SessionCommand,
    SessionEvent, User, UserCommand, UserEvent,
};
use infra::commands::CommandBus;
use infra::event_log::{self, LogPosition};
use infra::settings::{CommonSettings, LogFormat};
use infra::testing::{self, eventually, TestDatabase, TestTopology};
use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::{Channel, Connection};
use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;
use worker::settings::WorkerSettings;

/// Upper bound of every wait; the tests normally finish far sooner.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of a test worker: small thresholds, long windows and durations
/// (so nothing runs out during a test), a fast expiry loop.
pub fn test_settings(db: &TestDatabase) -> WorkerSettings {
    WorkerSettings {
        common: CommonSettings {
            database_url: db.url.clone(),
            database_max_connections: 4,
            amqp_url: testing::amqp_url(),
            amqp_exchange: String::new(),
            amqp_queue_prefix: String::new(),
            log_format: LogFormat::Json,
            migrate_on_start: false,
        },
        worker_addr: "127.0.0.1:0".into(),
        lockout_threshold: 3,
        lockout_window_seconds: 600,
        lockout_duration_seconds: 300,
        lockout_ip_threshold: 100,
        lockout_ip_block_seconds: 120,
        session_expiry_interval_ms: 100,
        session_expiry_batch: 500,
        delivery_limit: 10,
        prefetch: 128,
        max_batch: 64,
        retry_base_ms: 10,
    }
}

/// One test's database, broker topology and settings. The queue exists
/// before any worker starts, so events published early wait for it.
pub struct Fixture {
    pub settings: WorkerSettings,
    group: ConsumerGroup,
    pub users: CommandBus<User>,
    pub sessions: CommandBus<Session>,
    relay: Mutex<LogPosition>,
    registered: std::sync::atomic::AtomicUsize,
    publisher: Publisher,
    channel: Channel,
    // Held for as long as the publisher and the channel need it.
    _conn: Connection,
    // Dropped last, in this order: queues and exchange, then the database.
    topology: TestTopology,
    pub db: TestDatabase,
}

impl Fixture {
    /// `tune` adjusts the worker's settings (thresholds, durations...).
    pub async fn new(tune: impl FnOnce(&mut WorkerSettings)) -> Self {
        init_logging();
        let db = TestDatabase::create().await;
        let mut settings = test_settings(&db);
        tune(&mut settings);
        let group = settings.consumer_group();
        let topology = TestTopology::new(vec![group.clone()]);
        settings.common.amqp_exchange = topology.topology.exchange.clone();
        settings.common.amqp_queue_prefix = topology.topology.queue_prefix.clone();

        let (conn, channel, publisher) = topology.declare_for_publishing(&group).await;
        Self {
            settings,
            users: CommandBus::new(db.pool.clone()),
            sessions: CommandBus::new(db.pool.clone()),
            relay: Mutex::new(LogPosition::default()),
            registered: Default::default(),
            publisher,
            group,
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

    /// Stands in for the outbox relay: publishes the events committed since
    /// the last call, in log order; returns them.
    pub async fn forward(&self) -> Vec<Envelope> {
        let mut position = self.relay.lock().await;
        let events = committed_after(self.pool(), &mut position).await;
        self.publish(&events).await;
        events
    }

    /// Publishes a marker (a `session.started` of a user of its own) and
    /// waits until the worker has committed it: everything published before
    /// it has then been handled (one consumer, one queue, no failures).
    pub async fn drain(&self) {
        let marker = Uuid::new_v4();
        let session_id = Uuid::new_v4();
        let now = Utc::now();
        let payload = SessionEvent::Started {
            session_id,
            user_id: marker,
            refresh_token_hash: domain::RefreshTokenHash::redacted(),
            started_at: now,
            expires_at: now + chrono::Duration::hours(1),
            idle_timeout_seconds: 3600,
            ip: None,
            user_agent: None,
        };
        let started = Envelope {
            event_id: Uuid::new_v4(),
            global_position: 0,
            transaction_id: 0,
            aggregate_type: SessionEvent::STARTED.aggregate_type().into(),
            aggregate_id: session_id.to_string(),
            sequence: 1,
            event_type: SessionEvent::STARTED.name().into(),
            event_version: SessionEvent::STARTED.version().into(),
            payload: serde_json::to_value(payload).expect("session start payload"),
            metadata: EventMetadata::default(),
            recorded_at: Utc::now(),
        };
        self.publish(&[started]).await;
        eventually(TIMEOUT, "the worker to handle the marker", || async {
            let handled: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM lockout_resets WHERE user_id = $1)",
            )
            .bind(marker)
            .fetch_one(self.pool())
            .await
            .unwrap();
            handled.then_some(())
        })
        .await;
    }

    /// Registers a new user.
    pub async fn register(&self) -> Uuid {
        use std::sync::atomic::Ordering::Relaxed;
        let index = self.registered.fetch_add(1, Relaxed);
        let user_id = Uuid::now_v7();
        let command = UserCommand::Register {
            user_id,
            email: Email::parse(&format!("user{index}@example.com")).expect("email"),
            display_name: DisplayName::parse(&format!("User {index}")).expect("name"),
            password_hash: PasswordHash::new(format!("$argon2id$v=19$m=19456,t=2,p=1$u{index}")),
        };
        self.users
            .execute(&user_id.to_string(), command, &request())
            .await
            .expect("register");
        user_id
    }

    /// Records a failed login of the user, as the API does.
    pub async fn fail_login(&self, user_id: Uuid, ip: Option<&str>, at: DateTime<Utc>) {
        let command = UserCommand::RecordLoginFailure {
            ip: ip.map(str::to_owned),
            at,
        };
        let outcome = self
            .users
            .execute(&user_id.to_string(), command, &request())
            .await
            .expect("record login failure");
        assert_eq!(outcome.events.len(), 1, "failure recorded");
    }

    /// Starts a session of the user, as a successful login does.
    pub async fn start_session(
        &self,
        user_id: Uuid,
        started_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        idle_timeout_seconds: i64,
    ) -> Uuid {
        let session_id = Uuid::now_v7();
        let command = SessionCommand::Start {
            session_id,
            user_id,
            refresh_token_hash: RefreshTokenHash::new(format!("{:064x}", session_id.as_u128())),
            started_at,
            expires_at,
            idle_timeout_seconds,
            ip: Some("127.0.0.1".into()),
            user_agent: Some("worker-tests".into()),
        };
        self.sessions
            .execute(&session_id.to_string(), command, &request())
            .await
            .expect("start session");
        session_id
    }

    /// Writes the session's row of `sessions_view` as the projector would.
    pub async fn project_session(
        &self,
        session_id: Uuid,
        user_id: Uuid,
        started_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        idle_timeout_seconds: i64,
    ) {
        sqlx::query(
            "INSERT INTO sessions_view (session_id, user_id, status, started_at, expires_at, \
                 idle_timeout_seconds, last_activity_at, idle_expires_at, sequence, global_position) \
             VALUES ($1, $2, 'active', $3, $4, $5, $3, $3 + make_interval(secs => $5), 1, 0)",
        )
        .bind(session_id)
        .bind(user_id)
        .bind(started_at)
        .bind(expires_at)
        .bind(idle_timeout_seconds)
        .execute(self.pool())
        .await
        .expect("insert into sessions_view");
    }

    /// Takes (and acks) one message from the worker's dead-letter queue.
    pub async fn take_dead_letter(&self) -> Option<BasicGetMessage> {
        let queue = self.topology.topology.dead_letter_queue_name(&self.group);
        let message = self
            .channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .expect("basic_get")?;
        message
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
        Some(message)
    }

    /// Payloads of the aggregate's events of one type, in order.
    pub async fn events_of(
        &self,
        aggregate_id: Uuid,
        event_type: EventType,
    ) -> Vec<serde_json::Value> {
        sqlx::query_scalar(
            "SELECT payload::jsonb FROM events WHERE aggregate_id = $1 AND event_type = $2 \
             ORDER BY sequence",
        )
        .bind(aggregate_id.to_string())
        .bind(event_type.name())
        .fetch_all(self.pool())
        .await
        .expect("read events")
    }

    /// Metadata of the aggregate's events of one type, in order.
    pub async fn metadata_of(
        &self,
        aggregate_id: Uuid,
        event_type: EventType,
    ) -> Vec<serde_json::Value> {
        sqlx::query_scalar(
            "SELECT metadata::jsonb FROM events WHERE aggregate_id = $1 AND event_type = $2 \
             ORDER BY sequence",
        )
        .bind(aggregate_id.to_string())
        .bind(event_type.name())
        .fetch_all(self.pool())
        .await
        .expect("read metadata")
    }

    pub async fn failures_stored(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM login_failures")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }
}

/// Request metadata as the API writes it.
fn request() -> EventMetadata {
    EventMetadata {
        actor_id: None,
        correlation_id: Some(Uuid::new_v4().to_string()),
        causation_id: Some(Uuid::new_v4().to_string()),
        request_ip: Some("127.0.0.1".into()),
        user_agent: Some("worker-tests".into()),
        occurred_at: Some(Utc::now()),
    }
}

/// Now, to the microsecond PostgreSQL keeps.
pub fn now() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .expect("truncate timestamp")
}

/// Events committed after `position`, in publishing order; advances it.
/// Like the relay it reads only below the oldest running transaction, and
/// waits until nothing is held back.
async fn committed_after(pool: &PgPool, position: &mut LogPosition) -> Vec<Envelope> {
    let started = Instant::now();
    let mut events = Vec::new();
    loop {
        let batch = event_log::read_committed_after(pool, *position, 1000)
            .await
            .expect("read the event log");
        if let Some(last) = batch.last() {
            *position = LogPosition::of(last);
            events.extend(batch);
            continue;
        }
        let held_back = event_log::has_rows_held_back(pool, *position)
            .await
            .expect("look for held back events");
        if !held_back {
            return events;
        }
        assert!(started.elapsed() < TIMEOUT, "events held back for too long");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `until` and `failures` of a lock's payload.
pub fn locked(payload: &serde_json::Value) -> (DateTime<Utc>, u32) {
    let lock = UserEvent::LOCKED;
    let event = domain::decode(lock.name(), lock.version(), payload.clone()).expect("a lock");
    match event {
        UserEvent::Locked { until, failures } => (until, failures),
        other => panic!("not a lock: {other:?}"),
    }
}

/// Logs of in-process workers go to the test output when `TEST_LOG` is set.
fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        infra::telemetry::init(LogFormat::Pretty);
    }
}
