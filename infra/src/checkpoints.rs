//! Where each reader of the event log has got to, as a `LogPosition` in
//! publishing order: the relay's (`relay_checkpoints`) and each
//! projection's (`projection_checkpoints`).

use sqlx::PgExecutor;

use crate::event_log::LogPosition;

/// The projector's one projection: every read model, applied in one
/// transaction per batch, so one checkpoint tells how fresh they all are.
pub const READ_MODELS: &str = "read_models";

/// A checkpoint row: its table and the key column naming the reader.
#[derive(Clone, Copy, Debug)]
pub enum Checkpoint<'a> {
    Relay(&'a str),
    Projection(&'a str),
}

impl Checkpoint<'_> {
    fn table_and_key(&self) -> (&'static str, &'static str, &str) {
        match self {
            Self::Relay(name) => ("relay_checkpoints", "relay", name),
            Self::Projection(name) => ("projection_checkpoints", "projection", name),
        }
    }

    /// The saved position, or the start of the log when there is none.
    pub async fn load(&self, db: impl PgExecutor<'_>) -> sqlx::Result<LogPosition> {
        let (table, key, name) = self.table_and_key();
        let row: Option<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT transaction_id, global_position FROM {table} WHERE {key} = $1"
        ))
        .bind(name)
        .fetch_optional(db)
        .await?;
        Ok(row
            .map(|(transaction_id, global_position)| LogPosition {
                transaction_id,
                global_position,
            })
            .unwrap_or_default())
    }

    /// Saves `position` unless the saved one is already further: a late
    /// duplicate never moves a checkpoint back.
    pub async fn advance(
        &self,
        db: impl PgExecutor<'_>,
        position: LogPosition,
    ) -> sqlx::Result<()> {
        let (table, key, name) = self.table_and_key();
        sqlx::query(&format!(
            "INSERT INTO {table} ({key}, transaction_id, global_position, updated_at) \
             VALUES ($1, $2, $3, now()) \
             ON CONFLICT ({key}) DO UPDATE \
               SET transaction_id = EXCLUDED.transaction_id, \
                   global_position = EXCLUDED.global_position, updated_at = now() \
             WHERE ({table}.transaction_id, {table}.global_position) \
                 < (EXCLUDED.transaction_id, EXCLUDED.global_position)"
        ))
        .bind(name)
        .bind(position.transaction_id)
        .bind(position.global_position)
        .execute(db)
        .await?;
        Ok(())
    }
}
