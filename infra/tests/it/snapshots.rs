//! Snapshots keep a command's cost flat: however long its stream, a command
//! folds at most `SNAPSHOT_AFTER_EVENTS` events, and the state it decides
//! on is the state the whole stream makes.

use chrono::{TimeDelta, Utc};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::EventStore;
use domain::session::ReuseInterval;
use domain::{
    DisplayName, Email, PasswordHash, RefreshTokenHash, RevocationReason, Session, SessionCommand,
    SessionError, SessionEvent, Snapshotted, User, UserCommand,
};
use infra::commands::CommandBus;
use infra::snapshots::{Snapshots, SNAPSHOT_AFTER_EVENTS};
use infra::testing::{request_metadata, seed_renamed_users, TestDatabase};
use postgres_es::PostgresEventRepository;
use uuid::Uuid;

fn rename(n: usize) -> UserCommand {
    UserCommand::ChangeDisplayName {
        display_name: DisplayName::parse(&format!("Name {n}")).unwrap(),
    }
}

async fn register(users: &CommandBus<User>, id: Uuid) {
    let command = UserCommand::Register {
        user_id: id,
        email: Email::parse(&format!("{id}@example.com")).unwrap(),
        display_name: DisplayName::parse("First").unwrap(),
        password_hash: PasswordHash::new(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into(),
        ),
    };
    users
        .execute(
            &id.to_string(),
            command,
            &request_metadata(Some(id), "snapshots"),
        )
        .await
        .unwrap();
}

/// The user as its whole stream makes it, folded without a snapshot.
async fn folded_in_full(db: &TestDatabase, id: Uuid) -> serde_json::Value {
    let store = PersistedEventStore::<_, User>::new_event_store(PostgresEventRepository::new(
        db.pool.clone(),
    ));
    let context = store.load_aggregate(&id.to_string()).await.unwrap();
    serde_json::to_value(&context.aggregate).unwrap()
}

async fn snapshot_sequence<A: Snapshotted>(db: &TestDatabase, id: &str) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT last_sequence FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(A::TYPE)
    .bind(id)
    .fetch_optional(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn no_command_folds_more_than_the_snapshot_interval_however_long_the_stream() {
    let db = TestDatabase::create().await;
    let users = CommandBus::<User>::new(db.pool.clone());
    let id = Uuid::now_v7();
    register(&users, id).await;
    let metadata = request_metadata(Some(id), "snapshots");
    let mut most = 0;
    for n in 0..(SNAPSHOT_AFTER_EVENTS * 8) {
        let outcome = users
            .execute(&id.to_string(), rename(n), &metadata)
            .await
            .unwrap();
        assert_eq!(outcome.events.len(), 1);
        most = most.max(outcome.folded);
    }
    assert!(
        most < SNAPSHOT_AFTER_EVENTS,
        "a command folded {most} events"
    );
    assert!(snapshot_sequence::<User>(&db, &id.to_string())
        .await
        .is_some());
    let loaded = serde_json::to_value(users.load(&id.to_string()).await.unwrap()).unwrap();
    assert_eq!(loaded, folded_in_full(&db, id).await);
}

#[tokio::test]
async fn a_stream_written_before_snapshots_is_folded_in_full_once() {
    let db = TestDatabase::create().await;
    let mut tx = db.pool.begin().await.unwrap();
    seed_renamed_users(&mut tx, 1, 300, &request_metadata(None, "seed"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let id: String = sqlx::query_scalar("SELECT aggregate_id FROM events LIMIT 1")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let users = CommandBus::<User>::new(db.pool.clone());
    let metadata = request_metadata(None, "snapshots");

    let first = users.execute(&id, rename(1), &metadata).await.unwrap();
    let second = users.execute(&id, rename(2), &metadata).await.unwrap();

    assert_eq!(first.folded, 301);
    assert_eq!(second.folded, 0);
    assert_eq!(snapshot_sequence::<User>(&db, &id).await, Some(302));
}

#[tokio::test]
async fn a_snapshot_of_another_schema_or_unreadable_is_ignored_and_replaced() {
    let db = TestDatabase::create().await;
    let users = CommandBus::<User>::new(db.pool.clone());
    let id = Uuid::now_v7();
    register(&users, id).await;
    let metadata = request_metadata(Some(id), "snapshots");
    for n in 0..SNAPSHOT_AFTER_EVENTS {
        users
            .execute(&id.to_string(), rename(n), &metadata)
            .await
            .unwrap();
    }
    let taken = snapshot_sequence::<User>(&db, &id.to_string())
        .await
        .unwrap();

    for spoil in [
        "UPDATE snapshots SET schema = schema + 1",
        "UPDATE snapshots SET payload = '{\"not\": \"a user\"}', schema = $1",
    ] {
        sqlx::query(spoil)
            .bind(User::SNAPSHOT_SCHEMA)
            .execute(&db.pool)
            .await
            .unwrap();
        let outcome = users
            .execute(&id.to_string(), rename(1000), &metadata)
            .await
            .unwrap();
        users
            .execute(&id.to_string(), rename(1001), &metadata)
            .await
            .unwrap();
        assert!(
            outcome.folded as i64 > taken,
            "{spoil}: folded {}",
            outcome.folded
        );
        let loaded = serde_json::to_value(users.load(&id.to_string()).await.unwrap()).unwrap();
        assert_eq!(loaded, folded_in_full(&db, id).await, "{spoil}");
    }
}

#[tokio::test]
async fn a_state_that_a_later_event_replaced_is_never_stored() {
    let db = TestDatabase::create().await;
    let users = CommandBus::<User>::new(db.pool.clone());
    let id = Uuid::now_v7();
    register(&users, id).await;
    let metadata = request_metadata(Some(id), "snapshots");
    users
        .execute(&id.to_string(), rename(1), &metadata)
        .await
        .unwrap();
    let stale = users.load(&id.to_string()).await.unwrap();
    users
        .execute(&id.to_string(), rename(2), &metadata)
        .await
        .unwrap();

    let snapshots = Snapshots::new(db.pool.clone());
    snapshots.save(&id.to_string(), &stale, 2).await.unwrap();
    assert_eq!(snapshot_sequence::<User>(&db, &id.to_string()).await, None);

    let current = users.load(&id.to_string()).await.unwrap();
    snapshots.save(&id.to_string(), &current, 3).await.unwrap();
    snapshots.save(&id.to_string(), &stale, 2).await.unwrap();
    assert_eq!(
        snapshot_sequence::<User>(&db, &id.to_string()).await,
        Some(3)
    );
}

fn token(n: usize) -> RefreshTokenHash {
    RefreshTokenHash::new(format!("{n:064x}"))
}

fn refresh(presented: usize, next: usize) -> SessionCommand {
    SessionCommand::Refresh {
        presented: token(presented),
        next: token(next),
        reuse_interval: ReuseInterval::new(TimeDelta::seconds(30)),
        now: Utc::now(),
    }
}

/// A session refreshed `rotations` times: token n was rotated away to n + 1.
async fn rotated_session(sessions: &CommandBus<Session>, rotations: usize) -> String {
    let id = Uuid::now_v7();
    let metadata = request_metadata(None, "snapshots");
    let start = SessionCommand::Start {
        second_factor_used: false,
        session_id: id,
        user_id: Uuid::now_v7(),
        refresh_token_hash: token(0),
        started_at: Utc::now(),
        expires_at: Utc::now() + TimeDelta::days(30),
        idle_timeout_seconds: 3600,
        ip: None,
        user_agent: None,
    };
    sessions
        .execute(&id.to_string(), start, &metadata)
        .await
        .unwrap();
    for n in 0..rotations {
        let outcome = sessions
            .execute(&id.to_string(), refresh(n, n + 1), &metadata)
            .await
            .unwrap();
        assert!(outcome.folded < SNAPSHOT_AFTER_EVENTS);
    }
    id.to_string()
}

#[tokio::test]
async fn a_long_session_still_tells_a_replayed_token_from_a_forged_one() {
    let db = TestDatabase::create().await;
    let sessions = CommandBus::<Session>::new(db.pool.clone());
    let metadata = request_metadata(None, "snapshots");
    let rotations = SNAPSHOT_AFTER_EVENTS * 3;

    // Never issued to this session: refused, nothing written.
    let id = rotated_session(&sessions, rotations).await;
    let forged = sessions
        .execute(&id, refresh(rotations + 7, 9_999), &metadata)
        .await;
    assert!(matches!(
        forged,
        Err(cqrs_es::AggregateError::UserError(
            SessionError::InvalidRefreshToken
        ))
    ));
    // The one before the current, and one long before it but rotated away
    // within the reuse interval: both rotate (a concurrent refresh).
    let previous = sessions
        .execute(&id, refresh(rotations - 1, 10_000), &metadata)
        .await
        .unwrap();
    assert!(matches!(
        previous.events[..],
        [SessionEvent::Refreshed { .. }]
    ));
    let older = sessions
        .execute(&id, refresh(3, 10_001), &metadata)
        .await
        .unwrap();
    assert!(matches!(older.events[..], [SessionEvent::Refreshed { .. }]));

    // Rotated away beyond the interval: the session is revoked as a reuse.
    let id = rotated_session(&sessions, rotations).await;
    let outcome = sessions
        .execute(
            &id,
            SessionCommand::Refresh {
                presented: token(2),
                next: token(10_002),
                reuse_interval: ReuseInterval::NONE,
                now: Utc::now(),
            },
            &metadata,
        )
        .await
        .unwrap();
    assert!(matches!(
        outcome.events[..],
        [SessionEvent::Revoked {
            reason: RevocationReason::RefreshTokenReused,
            ..
        }]
    ));
}
