//! Fills the event store fast with events that decode: synthetic users,
//! each registered and then renamed many times, written to `events` in bulk
//! (no commands, no uniqueness claims). For tests and benchmarks of what
//! reads the log, not of the write side.

use bus::EventMetadata;
use domain::{ContractEvent, DisplayName, Email, PasswordHash, UserEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::event_log::LogPosition;
use crate::event_stream::{self, NewEvent, StreamHead};

/// A stored hash of no password: the seeded users never sign in.
const SEED_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2VlZHNlZWQ$c2VlZHNlZWRzZWVkc2VlZA";

/// Events sealed and written per statement: large enough that the round
/// trips do not count, small enough that the arrays stay a few MB.
const ROWS_PER_STATEMENT: usize = 5_000;

/// Appends `users` users, each registered then renamed `renames` times
/// (`users * (1 + renames)` events), in `db`'s transaction; returns where
/// the last one stands in publishing order. Each event is sealed, chained
/// and hashed in Rust as the appender does it (`event_stream`), and the
/// events are interleaved as many users acting at once would write them:
/// every user's registration, then every user's first rename, and so on.
pub async fn seed_renamed_users(
    db: &mut PgConnection,
    users: usize,
    renames: usize,
    metadata: &EventMetadata,
) -> sqlx::Result<LogPosition> {
    let ids: Vec<String> = (0..users).map(|_| Uuid::new_v4().to_string()).collect();
    let metadata = serde_json::to_value(metadata.to_map()).expect("metadata serializes");
    let renamed = new_event(&UserEvent::DisplayNameChanged {
        display_name: DisplayName::parse("Renamed Seed").expect("a valid name"),
    });
    let mut last_hashes = vec![String::new(); users];
    let mut global_position = 0;
    // One step of many users per statement: every stream's events stay in
    // order, and the log interleaves the users.
    for step in 0..=renames {
        for first in (0..users).step_by(ROWS_PER_STATEMENT) {
            let slice = first..(first + ROWS_PER_STATEMENT).min(users);
            let mut columns = event_stream::Columns::default();
            let recorded_at = now_in_microseconds();
            for index in slice {
                let event = match step {
                    0 => new_event(&registered(&ids[index])),
                    _ => renamed.clone(),
                };
                let head = StreamHead {
                    aggregate_type: UserEvent::AGGREGATE_TYPE,
                    aggregate_id: &ids[index],
                    last_sequence: step,
                    last_hash: &last_hashes[index],
                };
                columns.push_sealed(&head, std::slice::from_ref(&event), &metadata, recorded_at);
                last_hashes[index] = columns.last_hash().to_owned();
            }
            let positions =
                event_stream::append_rows(db, UserEvent::AGGREGATE_TYPE, columns).await?;
            global_position = positions.last().copied().unwrap_or(global_position);
        }
    }
    let transaction_id: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *db)
        .await?;
    Ok(LogPosition {
        transaction_id,
        global_position,
    })
}

fn new_event(event: &UserEvent) -> NewEvent {
    NewEvent {
        event_type: event.contract_type().name().to_owned(),
        event_version: event.contract_type().version().to_owned(),
        payload: serde_json::to_value(event).expect("events serialize"),
    }
}

/// The time as PostgreSQL keeps it (whole microseconds).
fn now_in_microseconds() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn registered(id: &str) -> UserEvent {
    let id = Uuid::parse_str(id).expect("a seeded id");
    UserEvent::Registered {
        user_id: id,
        email: Email::parse(&format!("seed-{id}@example.com")).expect("a valid email"),
        display_name: DisplayName::parse("Seed").expect("a valid name"),
        password_hash: PasswordHash::new(SEED_HASH.to_owned()),
    }
}
