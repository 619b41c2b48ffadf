//! The read model as the projector wrote it, and as it must be: the fold of
//! each user's events in the event store through `domain::User`.

use std::sync::Mutex;

use bus::Envelope;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::{User, UserEvent};
use infra::event_log::{self, LogPosition};
use infra::testing::eventually;
use projector::projection::CHECKPOINT;
use projector::views::{View, USERS_VIEW};
use sqlx::PgPool;
use uuid::Uuid;

use super::TIMEOUT;

/// One row of `users_view`, every column.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub email_key: String,
    pub display_name: String,
    pub status: String,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
    pub sequence: i64,
    pub global_position: i64,
}

/// `users_view` ordered by id.
pub async fn view_rows(pool: &PgPool) -> Vec<UserRow> {
    table_rows(pool, USERS_VIEW).await
}

/// The rows of `users_view` or of a table like it (a rebuild's), by id.
pub async fn table_rows(pool: &PgPool, table: &str) -> Vec<UserRow> {
    sqlx::query_as(&format!(
        "SELECT id, email, email_key, display_name, status, registered_at, updated_at, \
                locked_until, sequence, global_position \
         FROM {table} ORDER BY id"
    ))
    .fetch_all(pool)
    .await
    .unwrap_or_else(|error| panic!("read {table}: {error}"))
}

pub async fn view_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {USERS_VIEW}"))
        .fetch_one(pool)
        .await
        .expect("count users_view")
}

/// Every table of every view.
pub fn view_tables() -> Vec<&'static str> {
    View::ALL
        .iter()
        .flat_map(|view| view.tables())
        .copied()
        .collect()
}

/// Each view table as JSON rows, in a fixed order: every column, including
/// any this file does not know about.
pub async fn table_snapshot(pool: &PgPool) -> Vec<(&'static str, Vec<serde_json::Value>)> {
    let mut snapshot = Vec::new();
    for table in view_tables() {
        let rows = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(v) FROM {table} v ORDER BY v::text"
        ))
        .fetch_all(pool)
        .await
        .unwrap_or_else(|error| panic!("snapshot {table}: {error}"));
        snapshot.push((table, rows));
    }
    snapshot
}

/// Definitions of the indexes and constraints of the view tables, names
/// included.
pub async fn index_definitions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes \
         WHERE schemaname = current_schema() AND tablename = ANY($1) \
         UNION ALL \
         SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE conrelid::regclass::text = ANY($1) \
         ORDER BY 1",
    )
    .bind(view_tables())
    .fetch_all(pool)
    .await
    .expect("read index definitions")
}

/// The checkpoint of the read models.
pub async fn checkpoint(pool: &PgPool) -> LogPosition {
    CHECKPOINT.load(pool).await.expect("read checkpoint")
}

/// The expected `users_view`: every user's events from the event store
/// applied to a `domain::User`, ordered by id.
pub async fn expected_rows(pool: &PgPool) -> Vec<UserRow> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1")
            .bind(User::TYPE)
            .fetch_all(pool)
            .await
            .expect("list users");
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        let events = event_log::read_stream(pool, User::TYPE, &id, 0, i64::MAX)
            .await
            .expect("read a user's events");
        rows.push(fold(&events));
    }
    rows.sort_by_key(|row| row.id);
    rows
}

fn fold(events: &[Envelope]) -> UserRow {
    let (first, last) = match events {
        [first, .., last] => (first, last),
        [only] => (only, only),
        [] => panic!("a user without events"),
    };
    let mut user = User::default();
    for (expected_sequence, envelope) in (1..).zip(events) {
        assert_eq!(
            envelope.sequence, expected_sequence,
            "gap in the event store"
        );
        let event: UserEvent = event_log::decode(envelope).expect("stored event decodes");
        user.apply(event);
    }
    let email = user.email().expect("registered user has an email");
    let occurred_at = |envelope: &Envelope| {
        envelope
            .metadata
            .occurred_at
            .unwrap_or(envelope.recorded_at)
    };
    UserRow {
        id: user.id().expect("registered user has an id"),
        email: email.as_str().to_owned(),
        email_key: email.uniqueness_key(),
        display_name: user
            .display_name()
            .expect("registered user has a name")
            .as_str()
            .to_owned(),
        status: user.status().as_str().to_owned(),
        registered_at: occurred_at(first),
        updated_at: occurred_at(last),
        locked_until: user.locked_until(),
        sequence: last.sequence,
        global_position: last.global_position,
    }
}

/// Waits until `users_view` equals the fold of the event store, row for row;
/// returns the rows. On timeout, prints what still differs.
pub async fn wait_for_fold(pool: &PgPool) -> Vec<UserRow> {
    let mut report = MismatchReport {
        expected: expected_rows(pool).await,
        last_seen: Mutex::new(Vec::new()),
    };
    let report_ref = &report;
    eventually(
        TIMEOUT,
        "users_view to equal the fold of the event store",
        || async move {
            let rows = view_rows(pool).await;
            let matches = rows == report_ref.expected;
            *report_ref.last_seen.lock().unwrap() = rows;
            matches.then_some(())
        },
    )
    .await;
    std::mem::take(&mut report.expected)
}

/// Prints the difference between the view and the fold if the wait panics.
struct MismatchReport {
    expected: Vec<UserRow>,
    last_seen: Mutex<Vec<UserRow>>,
}

impl Drop for MismatchReport {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let seen = self
            .last_seen
            .lock()
            .map(|rows| rows.clone())
            .unwrap_or_default();
        eprintln!(
            "users_view has {} rows, the fold {}",
            seen.len(),
            self.expected.len()
        );
        let differing = self
            .expected
            .iter()
            .filter(|row| !seen.contains(row))
            .take(5);
        for expected in differing {
            let actual = seen.iter().find(|row| row.id == expected.id);
            eprintln!("expected {expected:?}\n  actual {actual:?}");
        }
    }
}
