//! The `worker.webhooks` consumer: one delivery row per (event, webhook
//! subscribed to it when it was published), written before the message is
//! acknowledged, idempotently (a redelivered message adds nothing).

use async_trait::async_trait;
use bus::{BatchHandler, Envelope, HandlerError};
use infra::webhooks::subscriptions::Subscriptions;
use sqlx::PgPool;
use uuid::Uuid;

pub struct Enqueue {
    pool: PgPool,
}

impl Enqueue {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl BatchHandler for Enqueue {
    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        let subscriptions = Subscriptions::load(&self.pool)
            .await
            .map_err(HandlerError::transient)?;
        let mut rows = Rows::default();
        for envelope in events {
            for webhook_id in subscriptions.subscribers(envelope) {
                rows.push(webhook_id, envelope);
            }
        }
        rows.insert(&self.pool)
            .await
            .map_err(HandlerError::transient)
    }
}

/// Columns of the rows to insert.
#[derive(Default)]
struct Rows {
    delivery_ids: Vec<Uuid>,
    webhook_ids: Vec<Uuid>,
    event_ids: Vec<Uuid>,
    event_types: Vec<String>,
    positions: Vec<i64>,
}

impl Rows {
    fn push(&mut self, webhook_id: Uuid, envelope: &Envelope) {
        self.delivery_ids.push(Uuid::now_v7());
        self.webhook_ids.push(webhook_id);
        self.event_ids.push(envelope.event_id);
        self.event_types.push(envelope.event_type.clone());
        self.positions.push(envelope.global_position);
    }

    async fn insert(self, pool: &PgPool) -> sqlx::Result<()> {
        if self.delivery_ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO webhook_deliveries \
                 (delivery_id, webhook_id, event_id, event_type, global_position) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[]) \
             ON CONFLICT (webhook_id, event_id) DO NOTHING",
        )
        .bind(&self.delivery_ids)
        .bind(&self.webhook_ids)
        .bind(&self.event_ids)
        .bind(&self.event_types)
        .bind(&self.positions)
        .execute(pool)
        .await?;
        Ok(())
    }
}
