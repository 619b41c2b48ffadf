//! The read models' tables as a whole (the views' and the audit log): their
//! rows as JSON, their indexes, and the checkpoint that covers them.

use infra::event_log::LogPosition;
use infra::testing::eventually;
use projector::projection::CHECKPOINT;
use projector::views::{ReadModel, USERS_VIEW};
use sqlx::PgPool;

use super::TIMEOUT;

pub async fn view_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {USERS_VIEW}"))
        .fetch_one(pool)
        .await
        .expect("count users_view")
}

/// Every table of every read model.
pub fn read_model_tables() -> Vec<&'static str> {
    ReadModel::all()
        .flat_map(|model| model.tables())
        .copied()
        .collect()
}

/// Each read model table as JSON rows, in a fixed order: every column,
/// including any this file does not know about.
pub async fn table_snapshot(pool: &PgPool) -> Vec<(&'static str, Vec<serde_json::Value>)> {
    let mut snapshot = Vec::new();
    for table in read_model_tables() {
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

/// Definitions of the indexes and constraints of the read model tables,
/// names included.
pub async fn index_definitions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes \
         WHERE schemaname = current_schema() AND tablename = ANY($1) \
         UNION ALL \
         SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE conrelid::regclass::text = ANY($1) \
         ORDER BY 1",
    )
    .bind(read_model_tables())
    .fetch_all(pool)
    .await
    .expect("read index definitions")
}

/// The names of the indexes of `table`, sorted.
pub async fn index_names(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes \
         WHERE schemaname = current_schema() AND tablename = $1 ORDER BY 1",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .expect("read index names")
}

/// Each read model table with its oid: a swap puts a new table in place.
pub async fn table_oids(pool: &PgPool) -> Vec<(&'static str, i64)> {
    let mut oids = Vec::new();
    for table in read_model_tables() {
        let oid = sqlx::query_scalar("SELECT $1::text::regclass::oid::bigint")
            .bind(table)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|error| panic!("oid of {table}: {error}"));
        oids.push((table, oid));
    }
    oids
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
