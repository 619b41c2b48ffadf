//! Applies deliveries from `projector.read_models` to the read models, each
//! batch in one transaction together with the projection's checkpoint.

use async_trait::async_trait;
use bus::{BatchHandler, Envelope, HandlerError};
use cqrs_es::Aggregate;
use domain::User;
use infra::checkpoints::Checkpoint;
use infra::event_log::LogPosition;
use sqlx::{PgConnection, PgPool};

use crate::users_view::{self, ApplyError};

pub const USERS_VIEW: &str = "users_view";
pub const USERS_CHECKPOINT: Checkpoint = Checkpoint::Projection(USERS_VIEW);
/// Events examined per query when advancing the checkpoint.
const PREFIX_SCAN: i64 = 1000;

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
            tracing::debug!(
                event_id = %envelope.event_id,
                event_type = %envelope.event_type,
                global_position = envelope.global_position,
                correlation_id = envelope.metadata.correlation_id.as_deref(),
                "applied"
            );
        }
        let applied = applied_prefix_end(&mut tx).await?;
        USERS_CHECKPOINT.advance(&mut *tx, applied).await?;
        tx.commit().await?;
        record_metrics(events, applied);
        Ok(())
    }
}

/// Throughput, the checkpoint, and how long after its commit each event
/// became visible in the read model.
fn record_metrics(events: &[Envelope], checkpoint: LogPosition) {
    let now = chrono::Utc::now();
    metrics::counter!("projector_events_applied_total").increment(events.len() as u64);
    metrics::gauge!("projection_checkpoint_position", "projection" => USERS_VIEW)
        .set(checkpoint.global_position as f64);
    for envelope in events {
        let lag = (now - envelope.recorded_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("projection_lag_seconds", "projection" => USERS_VIEW).record(lag);
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

/// How far, in publishing order, every event is applied: the checkpoint
/// must never pass an event that is not, or read-your-writes would answer
/// before the write is visible. Deliveries can arrive early (a requeued
/// failure, a second consumer), so this asks the event store and the view
/// rather than trusting the highest position seen.
async fn applied_prefix_end(db: &mut PgConnection) -> sqlx::Result<LogPosition> {
    let mut end = USERS_CHECKPOINT.load(&mut *db).await?;
    loop {
        let rows: Vec<(i64, i64, bool)> = sqlx::query_as(
            "SELECT e.transaction_id::text::bigint, e.global_position, \
                    e.aggregate_type <> $3 OR COALESCE(v.sequence >= e.sequence, false) \
             FROM events e LEFT JOIN users_view v \
               ON v.id = CASE WHEN e.aggregate_type = $3 THEN e.aggregate_id::uuid END \
             WHERE (e.transaction_id, e.global_position) > ($1::text::xid8, $2) \
               AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY e.transaction_id, e.global_position LIMIT $4",
        )
        .bind(end.transaction_id)
        .bind(end.global_position)
        .bind(User::TYPE)
        .bind(PREFIX_SCAN)
        .fetch_all(&mut *db)
        .await?;
        let scanned = rows.len() as i64;
        for (transaction_id, global_position, applied) in rows {
            if !applied {
                return Ok(end);
            }
            end = LogPosition {
                transaction_id,
                global_position,
            };
        }
        if scanned < PREFIX_SCAN {
            return Ok(end);
        }
    }
}

#[async_trait]
impl BatchHandler for ReadModels {
    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        self.apply_batch(events).await.map_err(HandlerError::new)
    }
}
