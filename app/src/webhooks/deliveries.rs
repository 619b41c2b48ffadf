//! A webhook's recent deliveries and their attempts, and redelivering one.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::AppError;

#[derive(Debug, Clone, FromRow)]
pub struct Delivery {
    pub delivery_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub global_position: i64,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    pub failures: i32,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    #[sqlx(skip)]
    pub attempts: Vec<DeliveryAttempt>,
}

#[derive(Debug, Clone, FromRow)]
pub struct DeliveryAttempt {
    pub delivery_id: Uuid,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    /// `delivered`, `failed` or `dead`.
    pub outcome: String,
}

pub struct DeliveryQueries {
    pool: PgPool,
}

impl DeliveryQueries {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The webhook's newest `limit` deliveries, each with its attempts.
    pub async fn recent(&self, webhook_id: Uuid, limit: i64) -> Result<Vec<Delivery>, AppError> {
        let mut deliveries: Vec<Delivery> = sqlx::query_as(
            "SELECT delivery_id, event_id, event_type, global_position, status, failures, \
                    CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at, \
                    created_at, completed_at \
             FROM webhook_deliveries WHERE webhook_id = $1 \
             ORDER BY created_at DESC, global_position DESC LIMIT $2",
        )
        .bind(webhook_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let ids: Vec<Uuid> = deliveries.iter().map(|d| d.delivery_id).collect();
        let attempts: Vec<DeliveryAttempt> = sqlx::query_as(
            "SELECT delivery_id, started_at, duration_ms, status_code, error, outcome \
             FROM webhook_delivery_attempts WHERE delivery_id = ANY($1) ORDER BY attempt_id",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        for attempt in attempts {
            if let Some(delivery) = deliveries
                .iter_mut()
                .find(|d| d.delivery_id == attempt.delivery_id)
            {
                delivery.attempts.push(attempt);
            }
        }
        Ok(deliveries)
    }

    /// Schedules the delivery again now, with a fresh count of attempts;
    /// `NotFound` unless it is one of this webhook's.
    pub async fn redeliver(&self, webhook_id: Uuid, delivery_id: Uuid) -> Result<(), AppError> {
        let updated = sqlx::query(
            "UPDATE webhook_deliveries \
             SET status = 'pending', failures = 0, next_attempt_at = now(), completed_at = NULL \
             WHERE webhook_id = $1 AND delivery_id = $2",
        )
        .bind(webhook_id)
        .bind(delivery_id)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(AppError::NotFound("delivery"));
        }
        Ok(())
    }
}
