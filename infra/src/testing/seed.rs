//! Fills the event store fast with events that decode: synthetic users,
//! each registered and then renamed many times, written to `events` in bulk
//! (no commands, no uniqueness claims). For tests and benchmarks of what
//! reads the log, not of the write side.

use bus::EventMetadata;
use domain::{ContractEvent, DisplayName, Email, PasswordHash, UserEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::event_log::LogPosition;

/// A stored hash of no password: the seeded users never sign in.
const SEED_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2VlZHNlZWQ$c2VlZHNlZWRzZWVkc2VlZA";

/// Appends `users` users, each registered then renamed `renames` times
/// (`users * (1 + renames)` events), in `db`'s transaction; returns where
/// the last one stands in publishing order.
pub async fn seed_renamed_users(
    db: &mut PgConnection,
    users: usize,
    renames: usize,
    metadata: &EventMetadata,
) -> sqlx::Result<LogPosition> {
    let ids: Vec<Uuid> = (0..users).map(|_| Uuid::new_v4()).collect();
    let metadata = serde_json::to_value(metadata.to_map()).expect("metadata serializes");
    let registrations: Vec<serde_json::Value> = ids.iter().map(registered).collect();
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         SELECT $1, id, 1, $3, $4, payload::json, $5::json \
         FROM unnest($2::text[], $6::jsonb[]) AS seeded(id, payload)",
    )
    .bind(UserEvent::AGGREGATE_TYPE)
    .bind(&ids)
    .bind(UserEvent::REGISTERED.name())
    .bind(UserEvent::REGISTERED.version())
    .bind(&metadata)
    .bind(&registrations)
    .execute(&mut *db)
    .await?;
    let renamed = UserEvent::DisplayNameChanged {
        display_name: DisplayName::parse("Renamed Seed").expect("a valid name"),
    };
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         SELECT $1, id, step, $3, $4, $5::json, $6::json \
         FROM unnest($2::text[]) AS seeded(id), generate_series(2, $7::int + 1) AS step \
         ORDER BY step, id",
    )
    .bind(UserEvent::AGGREGATE_TYPE)
    .bind(&ids)
    .bind(renamed.contract_type().name())
    .bind(renamed.contract_type().version())
    .bind(serde_json::to_value(&renamed).expect("events serialize"))
    .bind(&metadata)
    .bind(renames as i32)
    .execute(&mut *db)
    .await?;
    let (transaction_id, global_position): (i64, Option<i64>) = sqlx::query_as(
        "SELECT pg_current_xact_id()::text::bigint, \
                (SELECT max(global_position) FROM events)",
    )
    .fetch_one(&mut *db)
    .await?;
    Ok(LogPosition {
        transaction_id,
        global_position: global_position.unwrap_or_default(),
    })
}

fn registered(id: &Uuid) -> serde_json::Value {
    let event = UserEvent::Registered {
        user_id: *id,
        email: Email::parse(&format!("seed-{id}@example.com")).expect("a valid email"),
        display_name: DisplayName::parse("Seed").expect("a valid name"),
        password_hash: PasswordHash::new(SEED_HASH.to_owned()),
    };
    serde_json::to_value(event).expect("events serialize")
}
