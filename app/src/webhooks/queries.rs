//! Webhooks as the event store has them. Subscriptions are few and their
//! streams short, so they are folded on read instead of kept in a read
//! model: a change is visible to the next request at once.

use domain::Webhook;
use infra::commands::CommandBus;
use infra::webhooks::subscriptions::{Subscriptions, SubscriptionsError};
use sqlx::PgPool;
use uuid::Uuid;

use crate::AppError;

pub struct WebhookQueries {
    pool: PgPool,
    webhooks: CommandBus<Webhook>,
}

impl From<SubscriptionsError> for AppError {
    fn from(error: SubscriptionsError) -> Self {
        match error {
            SubscriptionsError::Database(error) => Self::Database(error),
            SubscriptionsError::Decode(error) => Self::Decode(error),
            SubscriptionsError::BadId(_) => Self::EventStore(Box::new(error)),
        }
    }
}

impl WebhookQueries {
    pub fn new(pool: PgPool) -> Self {
        Self {
            webhooks: CommandBus::new(pool.clone()),
            pool,
        }
    }

    /// Every live webhook, oldest first.
    pub async fn list(&self) -> Result<Vec<Webhook>, AppError> {
        let subscriptions = Subscriptions::load(&self.pool).await?;
        let mut live: Vec<Webhook> = subscriptions.live().collect();
        live.sort_by_key(Webhook::id);
        Ok(live)
    }

    /// A live webhook; `NotFound` when unknown or deleted.
    pub async fn get(&self, webhook_id: Uuid) -> Result<Webhook, AppError> {
        let webhook = self.webhooks.load(&webhook_id.to_string()).await?;
        if webhook.exists() {
            Ok(webhook)
        } else {
            Err(AppError::NotFound("webhook"))
        }
    }
}
