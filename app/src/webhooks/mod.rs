//! The write side of webhooks: register, change, rotate the signing secret,
//! delete. A URL is checked against the destination policy (scheme, and
//! where its host resolves) before any command; a registration is admitted
//! only while fewer than `WEBHOOKS_MAX` webhooks exist; a new secret is
//! stored before the command that names it and forgotten if the command
//! fails.

mod deliveries;
mod limit;
mod queries;

pub use deliveries::{Delivery, DeliveryAttempt, DeliveryQueries};
pub use queries::WebhookQueries;

use chrono::{TimeDelta, Utc};
use domain::webhook::{EventTypePatterns, WebhookDescription, WebhookLimit, WebhookUrl};
use domain::{Webhook, WebhookCommand};
use infra::commands::CommandBus;
use infra::webhooks::{DestinationPolicy, SecretStore, SigningSecret};
use sqlx::PgPool;
use uuid::Uuid;

use self::limit::Places;
use crate::power::Actor;
use crate::{AppError, RequestContext};

/// A new webhook, or its changed fields: values already validated.
#[derive(Debug, Clone, Default)]
pub struct WebhookChanges {
    pub url: Option<WebhookUrl>,
    pub event_types: Option<EventTypePatterns>,
    pub description: Option<WebhookDescription>,
    pub enabled: Option<bool>,
}

/// What a command that issues a secret returns: the only time it is shown.
#[derive(Debug)]
pub struct Issued {
    pub id: Uuid,
    pub position: i64,
    pub secret: SigningSecret,
}

pub struct WebhookCommands {
    webhooks: CommandBus<Webhook>,
    secrets: SecretStore,
    destinations: DestinationPolicy,
    rotation_overlap: TimeDelta,
    places: Places,
}

/// What the deployment decides about webhooks (the api's settings).
#[derive(Debug, Clone)]
pub struct WebhookPolicy {
    pub destinations: DestinationPolicy,
    pub rotation_overlap: TimeDelta,
    pub limit: WebhookLimit,
}

impl WebhookCommands {
    pub fn new(pool: PgPool, policy: WebhookPolicy) -> Self {
        Self {
            webhooks: CommandBus::new(pool.clone()),
            secrets: SecretStore::new(pool.clone()),
            places: Places::new(pool, policy.limit),
            destinations: policy.destinations,
            rotation_overlap: policy.rotation_overlap,
        }
    }

    pub async fn register(
        &self,
        context: &RequestContext,
        actor: &Actor,
        url: WebhookUrl,
        event_types: EventTypePatterns,
        description: WebhookDescription,
    ) -> Result<Issued, AppError> {
        self.check_destination(&url).await?;
        let webhook_id = Uuid::now_v7();
        let command = |secret_id| WebhookCommand::Register {
            webhook_id,
            url,
            event_types,
            description,
            secret_id,
        };
        self.places
            .while_admitted(|| self.with_new_secret(context, actor, webhook_id, command))
            .await
    }

    pub async fn update(
        &self,
        context: &RequestContext,
        actor: &Actor,
        webhook_id: Uuid,
        changes: WebhookChanges,
    ) -> Result<i64, AppError> {
        if let Some(url) = &changes.url {
            self.check_destination(url).await?;
        }
        let command = WebhookCommand::Update {
            url: changes.url,
            event_types: changes.event_types,
            description: changes.description,
            enabled: changes.enabled,
        };
        self.execute(context, actor, webhook_id, command).await
    }

    /// A new secret signs from now on; the current one keeps signing beside
    /// it for the rotation overlap.
    pub async fn rotate_secret(
        &self,
        context: &RequestContext,
        actor: &Actor,
        webhook_id: Uuid,
    ) -> Result<Issued, AppError> {
        let previous_valid_until = Utc::now() + self.rotation_overlap;
        let command = |secret_id| WebhookCommand::RotateSecret {
            secret_id,
            previous_valid_until,
        };
        self.with_new_secret(context, actor, webhook_id, command)
            .await
    }

    pub async fn delete(
        &self,
        context: &RequestContext,
        actor: &Actor,
        webhook_id: Uuid,
    ) -> Result<i64, AppError> {
        self.execute(context, actor, webhook_id, WebhookCommand::Delete)
            .await
    }

    async fn check_destination(&self, url: &WebhookUrl) -> Result<(), AppError> {
        self.destinations
            .check(url)
            .await
            .map(|_| ())
            .map_err(|refused| AppError::Invalid {
                field: "url",
                message: refused.message(),
            })
    }

    async fn with_new_secret(
        &self,
        context: &RequestContext,
        actor: &Actor,
        webhook_id: Uuid,
        command: impl FnOnce(Uuid) -> WebhookCommand,
    ) -> Result<Issued, AppError> {
        let secret_id = Uuid::new_v4();
        let secret = SigningSecret::generate();
        self.secrets.store(secret_id, webhook_id, &secret).await?;
        match self
            .execute(context, actor, webhook_id, command(secret_id))
            .await
        {
            Ok(position) => Ok(Issued {
                id: webhook_id,
                position,
                secret,
            }),
            Err(error) => {
                if let Err(cleanup) = self.secrets.forget(secret_id).await {
                    tracing::warn!(error = %cleanup, %secret_id, "unused webhook secret kept");
                }
                Err(error)
            }
        }
    }

    async fn execute(
        &self,
        context: &RequestContext,
        actor: &Actor,
        webhook_id: Uuid,
        command: WebhookCommand,
    ) -> Result<i64, AppError> {
        let outcome = self
            .webhooks
            .execute(
                &webhook_id.to_string(),
                command,
                &context.metadata_by(actor),
            )
            .await?;
        Ok(outcome.position)
    }
}
