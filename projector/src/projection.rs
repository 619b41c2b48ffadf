//! Applies deliveries from `projector.read_models` to the read models (an
//! event to the view of its aggregate type and to the audit log), each batch
//! in one transaction together with the projection's checkpoint, with a few
//! set-based statements ([`batch`]).

use std::sync::LazyLock;

use async_trait::async_trait;
use bus::{BatchHandler, Envelope, HandlerError};
use infra::checkpoints::{Checkpoint, READ_MODELS};
use infra::event_log::{LogPosition, HORIZON};
use sqlx::{PgConnection, PgPool};

use crate::apply::{self, ApplyError};
use crate::batch;
use crate::executor;
use crate::views::{AuditLogRow, Target, View, AUDIT_LOG};

/// One checkpoint for every read model: a batch writes them all in one
/// transaction.
pub const CHECKPOINT: Checkpoint = Checkpoint::Projection(READ_MODELS);
/// Events examined per query when advancing the checkpoint.
const PREFIX_SCAN: i64 = 1000;
/// Taken shared by every batch and exclusively by a rebuild's swap, before
/// any table lock: a batch writes the views in the order its events come,
/// so locking the tables alone could deadlock with the swap.
const WRITERS_LOCK: i64 = 0x7072_6f6a_6563_746f;

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
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(WRITERS_LOCK)
            .execute(&mut *tx)
            .await?;
        batch::apply(&mut tx, events).await?;
        for envelope in events {
            tracing::debug!(
                event_id = %envelope.event_id,
                event_type = %envelope.event_type,
                global_position = envelope.global_position,
                correlation_id = envelope.metadata.correlation_id.as_deref(),
                "applied"
            );
        }
        let applied = applied_prefix_end(&mut tx).await?;
        CHECKPOINT.advance(&mut *tx, applied).await?;
        tx.commit().await?;
        record_metrics(events, applied);
        Ok(())
    }
}

/// Waits until no batch is being applied and keeps new ones waiting until
/// the transaction ends.
pub async fn exclude_writers(db: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(WRITERS_LOCK)
        .execute(db)
        .await?;
    Ok(())
}

/// Throughput, the checkpoint, and how long after its commit each event
/// became visible in the read models.
fn record_metrics(events: &[Envelope], checkpoint: LogPosition) {
    let now = chrono::Utc::now();
    let lags = events
        .iter()
        .map(|envelope| (now - envelope.recorded_at).num_milliseconds().max(0) as f64 / 1000.0);
    crate::metrics::record_batch(events.len(), checkpoint.global_position, lags);
}

/// Applies an event to the view of its aggregate type, if any, and records
/// it in the audit log, with the earlier events the view loaded to fill a
/// gap: those arrive later, or never if the broker lost them.
pub async fn apply_to(
    db: &mut PgConnection,
    target: Target,
    envelope: &Envelope,
) -> Result<(), ApplyError> {
    let loaded = match View::of_aggregate(&envelope.aggregate_type) {
        Some(view) => apply::apply(db, view, target, envelope).await?,
        None => Vec::new(),
    };
    for event in loaded.iter().chain([envelope]) {
        executor::record(db, target, &AuditLogRow::of(event)).await?;
    }
    Ok(())
}

/// How far, in publishing order, every event is applied and recorded in the
/// audit log: the checkpoint must never pass an event that is not, or
/// read-your-writes would answer before the write is visible. Deliveries
/// can arrive early (a requeued failure, a second consumer), so this asks
/// the event store and the read models rather than trusting the highest
/// position seen.
pub async fn applied_prefix_end(db: &mut PgConnection) -> sqlx::Result<LogPosition> {
    let mut end = CHECKPOINT.load(&mut *db).await?;
    loop {
        let rows: Vec<(i64, i64, bool)> = sqlx::query_as(&PREFIX_SQL)
            .bind(end.transaction_id)
            .bind(end.global_position)
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

/// The committed events after `($1, $2)` in publishing order, each with
/// whether the view of its aggregate type has reached its sequence (events
/// of no view need none) and the audit log holds it.
static PREFIX_SQL: LazyLock<String> = LazyLock::new(|| {
    let mut joins = String::new();
    let mut applied = String::from("CASE e.aggregate_type");
    for (index, view) in View::ALL.into_iter().enumerate() {
        let (table, key, kind) = (view.name(), view.key_column(), view.aggregate_type());
        // The CASE keeps other aggregate types' ids from being cast.
        joins.push_str(&format!(
            " LEFT JOIN {table} v{index} ON v{index}.{key} = \
               CASE WHEN e.aggregate_type = '{kind}' THEN e.aggregate_id::uuid END"
        ));
        applied.push_str(&format!(
            " WHEN '{kind}' THEN COALESCE(v{index}.sequence >= e.sequence, false)"
        ));
    }
    applied.push_str(" ELSE true END AND a.global_position IS NOT NULL");
    joins.push_str(&format!(
        " LEFT JOIN {AUDIT_LOG} a ON a.global_position = e.global_position"
    ));
    format!(
        "SELECT e.transaction_id::text::bigint, e.global_position, {applied} \
         FROM events e{joins} \
         WHERE (e.transaction_id, e.global_position) > ($1::text::xid8, $2) \
           AND e.transaction_id < {HORIZON} \
         ORDER BY e.transaction_id, e.global_position LIMIT $3"
    )
});

#[async_trait]
impl BatchHandler for ReadModels {
    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        self.apply_batch(events).await.map_err(|error| {
            if error.is_permanent() {
                HandlerError::permanent(error)
            } else {
                HandlerError::transient(error)
            }
        })
    }
}
