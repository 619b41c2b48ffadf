//! Applies deliveries from `projector.read_models` to the read models, each
//! batch in one transaction together with the projection's checkpoint.

use async_trait::async_trait;
use bus::{BatchHandler, Envelope, HandlerError};
use cqrs_es::Aggregate;
use domain::User;
use infra::event_log::LogPosition;
use sqlx::{PgConnection, PgPool};

use crate::users_view::{self, ApplyError};

pub const USERS_VIEW: &str = "users_view";

pub struct ReadModels {
    pool: PgPool,
}

impl ReadModels {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Applies the events and advances the checkpoint in one transaction.
    pub async fn apply_batch(&self, events: &[Envelope]) -> Result<(), ApplyError> {
        let mut tx = self.pool.begin().await?;
        for envelope in events {
            apply_to(&mut tx, users_view::LIVE_TABLE, envelope).await?;
        }
        if let Some(last) = events.iter().map(LogPosition::of).max() {
            advance_checkpoint(&mut tx, USERS_VIEW, last).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Routes an event to the read models it concerns; others are skipped.
pub async fn apply_to(
    db: &mut PgConnection,
    users_table: &str,
    envelope: &Envelope,
) -> Result<(), ApplyError> {
    if envelope.aggregate_type == User::TYPE {
        users_view::apply(db, users_table, envelope).await?;
    }
    Ok(())
}

/// Moves the checkpoint forward in publishing order; a late duplicate never
/// moves it back.
pub async fn advance_checkpoint(
    db: &mut PgConnection,
    projection: &str,
    position: LogPosition,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, transaction_id, global_position, updated_at) \
         VALUES ($1, $2, $3, now()) \
         ON CONFLICT (projection) DO UPDATE \
           SET transaction_id = EXCLUDED.transaction_id, \
               global_position = EXCLUDED.global_position, updated_at = now() \
         WHERE (projection_checkpoints.transaction_id, projection_checkpoints.global_position) \
             < (EXCLUDED.transaction_id, EXCLUDED.global_position)",
    )
    .bind(projection)
    .bind(position.transaction_id)
    .bind(position.global_position)
    .execute(db)
    .await?;
    Ok(())
}

#[async_trait]
impl BatchHandler for ReadModels {
    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        self.apply_batch(events).await.map_err(HandlerError::new)
    }
}
