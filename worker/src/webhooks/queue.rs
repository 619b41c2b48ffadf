//! The delivery queue (`webhook_deliveries`): claiming due rows with a
//! lease, and recording each attempt.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

/// A delivery this worker holds until its lease ends.
#[derive(Debug, Clone, FromRow)]
pub struct Claimed {
    pub delivery_id: Uuid,
    pub event_id: Uuid,
    pub global_position: i64,
    pub failures: i32,
}

/// What became of an attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub enum Next {
    Delivered,
    RetryAt(DateTime<Utc>),
    Dead,
}

/// The webhooks with a delivery due now.
pub async fn due_webhooks(pool: &PgPool) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT DISTINCT webhook_id FROM webhook_deliveries \
         WHERE status = 'pending' AND next_attempt_at <= now()",
    )
    .fetch_all(pool)
    .await
}

/// Up to `limit` of the webhook's due deliveries, oldest first, each moved
/// a `lease` ahead: no other claim takes them until it ends.
pub async fn claim(
    pool: &PgPool,
    webhook_id: Uuid,
    limit: i64,
    lease: Duration,
) -> sqlx::Result<Vec<Claimed>> {
    sqlx::query_as(
        "UPDATE webhook_deliveries \
         SET next_attempt_at = now() + make_interval(secs => $3) \
         WHERE delivery_id IN ( \
             SELECT delivery_id FROM webhook_deliveries \
             WHERE webhook_id = $1 AND status = 'pending' AND next_attempt_at <= now() \
             ORDER BY next_attempt_at, global_position LIMIT $2 \
             FOR UPDATE SKIP LOCKED) \
         RETURNING delivery_id, event_id, global_position, failures",
    )
    .bind(webhook_id)
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Records the attempt and what comes next, in one transaction.
pub async fn record(
    pool: &PgPool,
    claimed: &Claimed,
    attempt: &Attempt,
    next: Next,
) -> sqlx::Result<()> {
    let (status, failures, next_attempt_at, outcome) = match next {
        Next::Delivered => ("delivered", claimed.failures, None, "delivered"),
        Next::RetryAt(at) => ("pending", claimed.failures + 1, Some(at), "failed"),
        Next::Dead => ("dead", claimed.failures + 1, None, "dead"),
    };
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE webhook_deliveries \
         SET status = $2, failures = $3, next_attempt_at = coalesce($4, next_attempt_at), \
             completed_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END \
         WHERE delivery_id = $1",
    )
    .bind(claimed.delivery_id)
    .bind(status)
    .bind(failures)
    .bind(next_attempt_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO webhook_delivery_attempts \
             (delivery_id, started_at, duration_ms, status_code, error, outcome) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(claimed.delivery_id)
    .bind(attempt.started_at)
    .bind(i32::try_from(attempt.duration.as_millis()).unwrap_or(i32::MAX))
    .bind(attempt.status_code.map(i32::from))
    .bind(attempt.error.as_deref())
    .bind(outcome)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Forgets the deliveries (and their attempts) that were delivered or
/// given up more than `older_than` ago; pending ones are kept however old.
pub async fn purge_finished(pool: &PgPool, older_than: Duration) -> sqlx::Result<u64> {
    let purged = sqlx::query(
        "DELETE FROM webhook_deliveries \
         WHERE status <> 'pending' AND completed_at <= now() - make_interval(secs => $1)",
    )
    .bind(older_than.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(purged.rows_affected())
}
