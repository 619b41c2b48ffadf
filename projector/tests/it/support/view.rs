//! The view tables as a whole: their rows as JSON, their indexes, and the
//! checkpoint that covers them.

use infra::event_log::LogPosition;
use infra::testing::eventually;
use projector::projection::CHECKPOINT;
use projector::views::{View, USERS_VIEW};
use sqlx::PgPool;

use super::TIMEOUT;

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

/// Waits until the checkpoint is at `position`.
pub async fn wait_for_checkpoint(pool: &PgPool, position: LogPosition) {
    eventually(
        TIMEOUT,
        "the checkpoint to reach the last event",
        || async { (checkpoint(pool).await == position).then_some(()) },
    )
    .await;
}
