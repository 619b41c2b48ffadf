//! Shared fixtures of the worker's integration tests: a fresh database and
//! broker topology per test, real commands executed on the event store, a
//! publisher standing in for the relay, and the worker run in-process or as
//! its binary.

pub mod run;

use bus::{Envelope, EventMetadata};
use chrono::{DateTime, Utc};
use domain::{
    DisplayName, Email, EventType, PasswordHash, RefreshTokenHash, Session, SessionCommand,
    SessionEvent, User, UserCommand, UserEvent,
};
use infra::commands::CommandBus;
use infra::testing::{self, eventually, request_metadata, Relay, TestBroker, TestDatabase};
use projector::executor;
use projector::views::{sessions, EventContext, Target};
use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;
use worker::settings::WorkerSettings;

pub use infra::testing::{now, TIMEOUT};

/// Settings of a test worker: small thresholds, long windows and durations
/// (so nothing runs out during a test), a fast expiry loop.
pub fn test_settings(db: &TestDatabase) -> WorkerSettings {
    WorkerSettings {
        common: testing::common_settings(db, 4),
        worker_addr: "127.0.0.1:0".into(),
        lockout_threshold: 3,
        lockout_window_seconds: 600,
        lockout_duration_seconds: 300,
        session_expiry_interval_ms: 100,
        session_expiry_batch: 500,
        delivery_limit: 10,
        prefetch: 128,
        max_batch: 64,
        retry_base_ms: 10,
        webhooks: webhook_settings(),
    }
}

/// Receivers in tests listen on 127.0.0.1 over plain http; short timeout,
/// retries and polls.
pub fn webhook_settings() -> worker::webhooks::WebhookSettings {
    worker::webhooks::WebhookSettings {
        destinations: infra::webhooks::DestinationPolicy {
            webhooks_allow_http: true,
            webhooks_allow_private_networks: true,
        },
        webhook_timeout_ms: 1_000,
        webhook_max_attempts: 3,
        webhook_retry_base_ms: 50,
        webhook_max_in_flight: 4,
        webhook_poll_interval_ms: 50,
        webhook_delivery_retention_days: 30,
    }
}

/// One test's database, broker topology and settings.
pub struct Fixture {
    pub settings: WorkerSettings,
    pub users: CommandBus<User>,
    pub sessions: CommandBus<Session>,
    relay: Mutex<Relay>,
    registered: std::sync::atomic::AtomicUsize,
    // Dropped last, in this order: queues and exchange, then the database.
    pub broker: TestBroker,
    pub db: TestDatabase,
}

impl Fixture {
    /// `tune` adjusts the worker's settings (thresholds, durations...).
    pub async fn new(tune: impl FnOnce(&mut WorkerSettings)) -> Self {
        testing::init_logging();
        let db = TestDatabase::create().await;
        let mut settings = test_settings(&db);
        tune(&mut settings);
        let mut broker = TestBroker::declare(settings.consumer_group(), &mut settings.common).await;
        // The worker declares its webhook queue too: deleted with the test's.
        broker
            .topology
            .groups
            .push(worker::settings::webhook_consumer_group(10));
        Self {
            settings,
            users: CommandBus::new(db.pool.clone()),
            sessions: CommandBus::new(db.pool.clone()),
            relay: Mutex::new(Relay::default()),
            registered: Default::default(),
            broker,
            db,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// Stands in for the outbox relay: publishes the events committed since
    /// the last call, in log order; returns them.
    pub async fn forward(&self) -> Vec<Envelope> {
        let mut relay = self.relay.lock().await;
        relay.forward(self.pool(), &self.broker).await
    }

    /// Publishes a marker (a `session.started` of a user of its own) and
    /// waits until the worker has committed it: everything published before
    /// it has then been handled (one consumer, one queue, no failures).
    pub async fn drain(&self) {
        let marker = Uuid::new_v4();
        let session_id = Uuid::new_v4();
        let now = Utc::now();
        let payload = SessionEvent::Started {
            second_factor_used: false,
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
        self.broker.publish(&[started]).await;
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
            second_factor_used: false,
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
        let started = SessionEvent::Started {
            second_factor_used: false,
            session_id,
            user_id,
            refresh_token_hash: RefreshTokenHash::redacted(),
            started_at,
            expires_at,
            idle_timeout_seconds,
            ip: None,
            user_agent: None,
        };
        let at = EventContext {
            aggregate_id: session_id,
            sequence: 1,
            global_position: 0,
            occurred_at: started_at,
        };
        let row = sessions::reduce(None, &started, &at).expect("a session's first row");
        let mut connection = self.pool().acquire().await.expect("a connection");
        let inserted = executor::write(&mut connection, Target::Live, &row)
            .await
            .expect("insert into sessions_view");
        assert!(inserted, "the session had a row already");
    }

    /// Payloads of the aggregate's events of one type, in order.
    pub async fn events_of(
        &self,
        aggregate_id: Uuid,
        event_type: EventType,
    ) -> Vec<serde_json::Value> {
        self.column_of_events("payload", aggregate_id, event_type)
            .await
    }

    /// Metadata of the aggregate's events of one type, in order.
    pub async fn metadata_of(
        &self,
        aggregate_id: Uuid,
        event_type: EventType,
    ) -> Vec<serde_json::Value> {
        self.column_of_events("metadata", aggregate_id, event_type)
            .await
    }

    async fn column_of_events(
        &self,
        column: &'static str,
        aggregate_id: Uuid,
        event_type: EventType,
    ) -> Vec<serde_json::Value> {
        let sql = format!(
            "SELECT {column}::jsonb FROM events WHERE aggregate_id = $1 AND event_type = $2 \
             ORDER BY sequence"
        );
        sqlx::query_scalar(&sql)
            .bind(aggregate_id.to_string())
            .bind(event_type.name())
            .fetch_all(self.pool())
            .await
            .unwrap_or_else(|error| panic!("read the events' {column}: {error}"))
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
    request_metadata(None, "worker-tests")
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
