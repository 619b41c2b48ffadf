//! Once `user.erased` is stored, the event store itself refuses a session
//! start for the person and stores what the person causes scrubbed
//! (migration `20261207000002_erasure_under_concurrency.sql`).

use chrono::{TimeDelta, Utc};
use domain::{RefreshTokenHash, Session, SessionCommand, UserEvent, ERASED};
use infra::commands::CommandBus;
use infra::testing::request_metadata;
use infra::testing::TestDatabase;
use uuid::Uuid;

/// Stores `user.erased` for `user_id` as the first event of its stream.
async fn erased(db: &TestDatabase, user_id: Uuid) {
    let payload = serde_json::to_value(UserEvent::Erased {
        erased_at: Utc::now(),
    })
    .unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) VALUES ($1, $2, 1, $3, $4, $5::jsonb::json, '{}')",
    )
    .bind(UserEvent::ERASED.aggregate_type())
    .bind(user_id.to_string())
    .bind(UserEvent::ERASED.name())
    .bind(UserEvent::ERASED.version())
    .bind(payload)
    .execute(&db.pool)
    .await
    .expect("user.erased");
}

fn start(session_id: Uuid, user_id: Uuid) -> SessionCommand {
    let now = Utc::now();
    SessionCommand::Start {
        second_factor_used: false,
        session_id,
        user_id,
        refresh_token_hash: RefreshTokenHash::new("f00d".into()),
        started_at: now,
        expires_at: now + TimeDelta::hours(1),
        idle_timeout_seconds: 600,
        ip: Some("192.0.2.9".into()),
        user_agent: Some("ErasedProbe/1.0".into()),
    }
}

#[tokio::test]
async fn no_session_starts_for_an_erased_person_and_what_they_cause_is_stored_scrubbed() {
    let db = TestDatabase::create().await;
    let sessions: CommandBus<Session> = CommandBus::new(db.pool.clone());
    let (person, other) = (Uuid::now_v7(), Uuid::now_v7());
    erased(&db, person).await;

    let Err(refused) = sessions
        .execute(
            &Uuid::now_v7().to_string(),
            start(Uuid::now_v7(), person),
            &request_metadata(Some(person), "ErasedProbe/1.0"),
        )
        .await
    else {
        panic!("a session start for an erased person is stored");
    };
    assert!(infra::erased::refused_as_erased(&refused), "{refused:?}");

    // Someone else's session, started by a request the erased person made.
    let session = Uuid::now_v7();
    sessions
        .execute(
            &session.to_string(),
            start(session, other),
            &request_metadata(Some(person), "ErasedProbe/1.0"),
        )
        .await
        .expect("stored");
    let (ip, agent, ip_salt, agent_salt): (String, String, serde_json::Value, serde_json::Value) =
        sqlx::query_as(
            "SELECT metadata ->> 'request_ip', metadata ->> 'user_agent', \
                    salts #> '{metadata,request_ip}', salts #> '{metadata,user_agent}' \
             FROM events WHERE aggregate_id = $1",
        )
        .bind(session.to_string())
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!((ip.as_str(), agent.as_str()), (ERASED, ERASED));
    assert!(ip_salt.is_null() && agent_salt.is_null());

    // Who is not erased is untouched.
    let kept = Uuid::now_v7();
    sessions
        .execute(
            &kept.to_string(),
            start(kept, other),
            &request_metadata(Some(other), "KeptProbe/1.0"),
        )
        .await
        .expect("stored");
    let agent: String =
        sqlx::query_scalar("SELECT metadata ->> 'user_agent' FROM events WHERE aggregate_id = $1")
            .bind(kept.to_string())
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(agent, "KeptProbe/1.0");
}
