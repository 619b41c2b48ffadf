//! Aggregate snapshots in the `snapshots` table: one row per stream, the
//! state after its event `last_sequence`. [`CommandBus`](crate::commands::CommandBus)
//! reads one before folding the events after it, and writes a new one once
//! [`SNAPSHOT_AFTER_EVENTS`] events were folded on top, so a command's cost
//! does not grow with its stream.
//!
//! Why not postgres-es's own snapshots: they are written only when a
//! sequence crosses a multiple of the snapshot size (a stream that existed
//! before never gets one until it does), an unreadable snapshot makes the
//! next one a second row of the same stream, and a failed snapshot update
//! reports a conflict for events that were committed.

use domain::Snapshotted;
use sqlx::PgPool;

/// Events folded on top of a snapshot (or from the start of a stream)
/// before a command writes a new one: a command folds at most this many.
pub const SNAPSHOT_AFTER_EVENTS: usize = 32;

#[derive(Clone)]
pub struct Snapshots {
    pool: PgPool,
}

impl Snapshots {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// A stored snapshot's text (of `A`'s current schema) as the
    /// aggregate; `None` when it no longer deserializes (then the stream is
    /// folded in full).
    pub fn decode<A: Snapshotted>(&self, aggregate_id: &str, payload: &str) -> Option<A> {
        serde_json::from_str(payload)
            .inspect_err(|error| {
                tracing::warn!(
                    aggregate_type = A::TYPE,
                    aggregate_id,
                    error = error as &dyn std::error::Error,
                    "snapshot does not deserialize; folding the stream in full"
                );
            })
            .ok()
    }

    /// Stores `aggregate` as the stream's state after event `last_sequence`,
    /// only while that is still the stream's last event (so a slower writer
    /// never stores a state that a later event, e.g. an erasure, replaced)
    /// and only over an older snapshot or one of another schema.
    pub async fn save<A: Snapshotted>(
        &self,
        aggregate_id: &str,
        aggregate: &A,
        last_sequence: usize,
    ) -> Result<(), SnapshotError> {
        let payload = serde_json::to_string(aggregate).map_err(SnapshotError::Serialize)?;
        let last_sequence =
            i64::try_from(last_sequence).map_err(|_| SnapshotError::SequenceOverflow)?;
        sqlx::query(
            "INSERT INTO snapshots (aggregate_type, aggregate_id, schema, last_sequence, payload) \
             SELECT $1, $2, $3, $4, $5::json \
             WHERE NOT EXISTS (SELECT 1 FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $4) \
             ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
             SET schema = EXCLUDED.schema, last_sequence = EXCLUDED.last_sequence, \
                 payload = EXCLUDED.payload, taken_at = now() \
             WHERE snapshots.last_sequence < EXCLUDED.last_sequence \
                OR snapshots.schema <> EXCLUDED.schema",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(A::SNAPSHOT_SCHEMA)
        .bind(last_sequence)
        .bind(payload)
        .execute(&self.pool)
        .await
        .map_err(SnapshotError::Store)?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the aggregate does not serialize")]
    Serialize(#[source] serde_json::Error),
    #[error("the sequence does not fit a bigint")]
    SequenceOverflow,
    #[error("the snapshot could not be stored")]
    Store(#[source] sqlx::Error),
}
