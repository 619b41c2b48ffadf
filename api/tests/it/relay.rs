//! The outbox relay against the real database and broker: a crash between
//! publish and checkpoint re-publishes and the projector applies once; a
//! transaction that commits out of position order is never skipped; the
//! checkpoint signer refuses events altered after its last checkpoint.

use crate::support;
use std::time::Duration;

use crate::support::{projector_group, settled, start_api, GOOD_PASSWORD};
use app::users::UserCommands;
use app::RequestContext;
use bus::Envelope;
use domain::{DisplayName, Email, Password, PasswordHash, UserEvent};
use infra::testing::{amqp_url, eventually, take_exactly, tap_group, TestDatabase, TestTopology};
use relay::{Relay, RelaySettings};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

struct Fixture {
    db: TestDatabase,
    topology: TestTopology,
    connection: lapin::Connection,
    channel: lapin::Channel,
}

impl Fixture {
    async fn new() -> Self {
        let db = TestDatabase::create().await;
        let topology = TestTopology::new(vec![projector_group(), tap_group()]);
        let connection = bus::connect(&amqp_url()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        topology.topology.declare_exchange(&channel).await.unwrap();
        for group in &topology.groups {
            topology
                .topology
                .declare_group(&channel, group)
                .await
                .unwrap();
        }
        Self {
            db,
            topology,
            connection,
            channel,
        }
    }

    async fn relay(&self) -> Relay {
        let settings = RelaySettings {
            batch_size: 100,
            window: 4,
            poll_interval: Duration::from_millis(100),
            seal: relay::SealSettings {
                key: std::sync::Arc::new(
                    infra::key_file::load_signing_key(
                        std::path::Path::new(&support::audit_key_file(&self.db)),
                        true,
                        "audit signing key",
                    )
                    .unwrap(),
                ),
                every_events: 1000,
                every: Duration::from_secs(60),
                state_file: infra::integrity::signer_state_file(std::path::Path::new(
                    &support::audit_key_file(&self.db),
                )),
                health: Default::default(),
            },
        };
        Relay::new(
            self.db.pool.clone(),
            &self.connection,
            &self.topology.topology,
            settings,
        )
        .await
        .unwrap()
    }

    /// Takes exactly `count` messages from the tap queue.
    async fn tapped(&self, count: usize) -> Vec<Envelope> {
        let queue = self.topology.topology.queue_name(&tap_group());
        take_exactly(&self.channel, &queue, count).await
    }
}

async fn register_users(pool: &sqlx::PgPool, count: usize) {
    register_users_named(pool, "u", count).await;
}

async fn register_users_named(pool: &sqlx::PgPool, prefix: &str, count: usize) {
    let passwords = app::password::Passwords::new(4).await.unwrap();
    let failed_logins = app::failed_logins::FailedLogins::new(
        pool.clone(),
        app::failed_logins::AddressPolicy::DEFAULT,
    );
    let commands = UserCommands::new(pool.clone(), passwords, std::sync::Arc::new(failed_logins));
    let context = RequestContext {
        correlation_id: "relay-test".into(),
        request_ip: None,
        user_agent: None,
    };
    for n in 0..count {
        commands
            .register(
                &context,
                app::users::Registrant::Operator,
                Email::parse(&format!("{prefix}{n}@example.com")).unwrap(),
                DisplayName::parse("U").unwrap(),
                Password::parse(GOOD_PASSWORD).unwrap(),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_crash_between_publish_and_checkpoint_republishes_and_applies_once() {
    let fixture = Fixture::new().await;
    register_users(&fixture.db.pool, 3).await;
    settled(&fixture.db.pool).await;

    let mut crashed = fixture.relay().await;
    let published = crashed
        .publish_next_batch()
        .await
        .unwrap()
        .expect("a batch");
    drop(crashed); // before save_checkpoint: the crash

    let mut restarted = fixture.relay().await;
    assert_eq!(restarted.checkpoint().global_position, 0);
    let again = restarted
        .publish_next_batch()
        .await
        .unwrap()
        .expect("a batch");
    assert_eq!(again, published);
    restarted.save_checkpoint(again).await.unwrap();
    assert!(restarted.publish_next_batch().await.unwrap().is_none());

    let tapped = fixture.tapped(6).await;
    for envelope in &tapped {
        let event: UserEvent = serde_json::from_value(envelope.payload.clone()).unwrap();
        let UserEvent::Registered { password_hash, .. } = event else {
            panic!("unexpected {event:?}");
        };
        assert!(password_hash.is_redacted(), "hash left the event store");
        assert_eq!(
            envelope.metadata.correlation_id.as_deref(),
            Some("relay-test")
        );
    }

    let settings = support::api_settings(&fixture.db, &fixture.topology, &[]);
    support::spawn_projector(&settings.common).await;
    let pool = &fixture.db.pool;
    eventually(Duration::from_secs(10), "projection", || async {
        let applied: i64 = sqlx::query_scalar(
            "SELECT global_position FROM projection_checkpoints WHERE projection = 'read_models'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        (applied == published.global_position).then_some(())
    })
    .await;
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT sequence FROM users_view")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(rows, vec![(1,), (1,), (1,)], "each user applied once");
}

async fn begin(url: &str) -> PgConnection {
    let mut connection = PgConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
    connection
}

async fn commit(connection: &mut PgConnection) {
    sqlx::query("COMMIT").execute(connection).await.unwrap();
}

/// Appends a registration inside the open transaction; returns its position.
async fn append_registration(connection: &mut PgConnection) -> i64 {
    let user_id = Uuid::now_v7();
    let event = UserEvent::Registered {
        user_id,
        email: Email::parse(&format!("{user_id}@example.com")).unwrap(),
        display_name: DisplayName::parse("Raw").unwrap(),
        password_hash: PasswordHash::new("$argon2id$test".into()),
    };
    sqlx::query_scalar(
        &format!("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('user', $1, 1, '{}', '1', $2, '{{}}') RETURNING global_position", domain::UserEvent::REGISTERED.name()),
    )
    .bind(user_id.to_string())
    .bind(serde_json::to_value(event).unwrap())
    .fetch_one(connection)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_lower_position_that_commits_later_is_published_not_skipped() {
    let fixture = Fixture::new().await;
    let mut relay = fixture.relay().await;
    let mut first = begin(&fixture.db.url).await;
    let mut second = begin(&fixture.db.url).await;
    let lower = append_registration(&mut first).await;
    let higher = append_registration(&mut second).await;
    assert!(lower < higher);
    commit(&mut second).await;

    // The open transaction could still gain rows below: nothing is published yet.
    assert_eq!(relay.publish_next_batch().await.unwrap(), None);
    commit(&mut first).await;
    settled(&fixture.db.pool).await;
    let last = relay.publish_next_batch().await.unwrap().expect("batch");
    relay.save_checkpoint(last).await.unwrap();

    let positions: Vec<i64> = fixture
        .tapped(2)
        .await
        .iter()
        .map(|e| e.global_position)
        .collect();
    assert_eq!(positions, vec![lower, higher]);
}

#[tokio::test]
async fn an_older_transaction_with_a_higher_position_does_not_hide_a_lower_one() {
    let fixture = Fixture::new().await;
    let mut relay = fixture.relay().await;
    let mut older = begin(&fixture.db.url).await;
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut older)
        .await
        .unwrap();
    let mut younger = begin(&fixture.db.url).await;
    let lower = append_registration(&mut younger).await;
    let higher = append_registration(&mut older).await;
    assert!(lower < higher);
    commit(&mut older).await;
    settled(&fixture.db.pool).await;

    let last = relay
        .publish_next_batch()
        .await
        .unwrap()
        .expect("older batch");
    assert_eq!(last.global_position, higher);
    relay.save_checkpoint(last).await.unwrap();
    commit(&mut younger).await;
    settled(&fixture.db.pool).await;
    let last = relay
        .publish_next_batch()
        .await
        .unwrap()
        .expect("younger batch");
    assert_eq!(
        last.global_position, lower,
        "a position-ordered reader would skip it"
    );
    relay.save_checkpoint(last).await.unwrap();

    let positions: Vec<i64> = fixture
        .tapped(2)
        .await
        .iter()
        .map(|e| e.global_position)
        .collect();
    assert_eq!(positions, vec![higher, lower]);
}

async fn register_over_http(address: &str, email: &str) {
    let response = reqwest::Client::new()
        .post(format!("{address}/v1/users"))
        .json(&serde_json::json!({"email": email, "password": GOOD_PASSWORD, "display_name": "H"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn one_relay_publishes_and_another_takes_over_when_it_dies() {
    let fixture = Fixture::new().await;
    // The first process takes the relay lock; the second waits for it.
    let mut leader = start_api(&fixture.db, &fixture.topology).await;
    let standby = start_api(&fixture.db, &fixture.topology).await;
    for n in 0..3 {
        register_over_http(&leader.address, &format!("l{n}@example.com")).await;
        register_over_http(&standby.address, &format!("s{n}@example.com")).await;
    }
    assert_eq!(
        fixture.tapped(6).await.len(),
        6,
        "each event published once"
    );

    leader.child.kill().unwrap();
    leader.child.wait().unwrap();
    register_over_http(&standby.address, "after@example.com").await;
    let tapped = fixture.tapped(1).await;
    let event: UserEvent = serde_json::from_value(tapped[0].payload.clone()).unwrap();
    assert!(
        matches!(event, UserEvent::Registered { email, .. } if email.as_str() == "after@example.com")
    );
}

/// Publishes whatever is ready and lets the signer fold it.
async fn publish_all(relay: &mut Relay) {
    while let Some(last) = relay.publish_next_batch().await.unwrap() {
        relay.save_checkpoint(last).await.unwrap();
    }
}

/// Publishes until the signer refuses. A busy server may hold the newest
/// events back from a batch for a moment (transaction ids are shared by
/// every database of the server, so another test's open transaction holds
/// the horizon): one pass is not always enough to reach them.
async fn refusal_once_published(relay: &mut Relay) -> relay::fold::Refusal {
    let started = std::time::Instant::now();
    loop {
        publish_all(relay).await;
        if let Some(refusal) = relay.signer_refusal() {
            return refusal.clone();
        }
        assert!(
            started.elapsed() < support::SHORT,
            "the signer refuses within {:?}",
            support::SHORT
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn checkpoints(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_checkpoints")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The signer recomputes what it signs: an event altered in the database
/// after the last checkpoint (its sealed form, or its link rehashed to
/// match) is named, and nothing more is signed; publishing goes on.
#[tokio::test]
async fn the_signer_refuses_an_event_altered_after_the_last_checkpoint() {
    let alterations: [(&str, &str); 2] = [
        (
            "hash_mismatch",
            "UPDATE events SET sealed = jsonb_set(sealed::jsonb, '{metadata,correlation_id}', \
             '\"sha256:00\"')::json WHERE global_position = (SELECT max(global_position) FROM events)",
        ),
        (
            "broken_link",
            "UPDATE events SET prev_hash = repeat('0', 64), \
                 hash = event_hash_v2(repeat('0', 64), event_id, aggregate_type, aggregate_id, \
                     sequence, event_type, event_version, sealed::text, recorded_at) \
             WHERE global_position = (SELECT max(global_position) FROM events)",
        ),
    ];
    for (reason, alteration) in alterations {
        let fixture = Fixture::new().await;
        register_users(&fixture.db.pool, 2).await;
        settled(&fixture.db.pool).await;
        let mut relay = fixture.relay().await;
        publish_all(&mut relay).await;
        let signed = checkpoints(&fixture.db.pool).await;
        assert_eq!(signed, 1, "the first checkpoint is due at once");
        assert!(relay.signer_refusal().is_none());

        register_users_named(&fixture.db.pool, "later", 2).await;
        settled(&fixture.db.pool).await;
        sqlx::raw_sql(alteration)
            .execute(&fixture.db.pool)
            .await
            .unwrap();
        let refusal = refusal_once_published(&mut relay).await;
        assert_eq!(
            serde_json::to_value(refusal.reason).unwrap(),
            reason,
            "{refusal:?}"
        );
        assert!(refusal.aggregate_id.is_some() && refusal.sequence.is_some());
        assert_eq!(checkpoints(&fixture.db.pool).await, signed);
        fixture.tapped(2 + 2).await;
    }
}
