//! The delivery loops: every poll, one task per endpoint with due
//! deliveries (at most one per endpoint in this process), each sending at
//! most `WEBHOOK_MAX_IN_FLIGHT` at a time. An endpoint that hangs keeps its
//! own task busy until the timeout and nothing else.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::Webhook;
use infra::commands::CommandBus;
use infra::shutdown::Shutdown;
use infra::webhooks::{SecretStore, SigningSecret};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::metrics::{self, Outcome};
use super::queue::{self, Attempt, Claimed, Next};
use super::retry::{self, AfterFailure};
use super::send::{self, Message};
use super::settings::WebhookSettings;
use super::{body, signing};

pub struct Dispatcher {
    context: Arc<Context>,
}

struct Context {
    pool: PgPool,
    webhooks: CommandBus<Webhook>,
    secrets: SecretStore,
    settings: WebhookSettings,
}

/// Where one endpoint's claimed deliveries go, checked once per batch.
struct Target {
    url: url::Url,
    client: reqwest::Client,
    secrets: Vec<SigningSecret>,
}

impl Dispatcher {
    pub fn new(pool: PgPool, settings: WebhookSettings) -> Self {
        Self {
            context: Arc::new(Context {
                webhooks: CommandBus::new(pool.clone()),
                secrets: SecretStore::new(pool.clone()),
                pool,
                settings,
            }),
        }
    }

    /// Until shutdown; then waits for the endpoints' tasks to finish the
    /// batch in hand (each attempt is bounded by the timeout).
    pub async fn run(self, shutdown: Shutdown) {
        let mut running: HashMap<Uuid, JoinHandle<()>> = HashMap::new();
        let mut purged_at: Option<Instant> = None;
        while !shutdown.is_triggered() {
            running.retain(|_, task| !task.is_finished());
            if purged_at.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
                self.purge().await;
                purged_at = Some(Instant::now());
            }
            match queue::due_webhooks(&self.context.pool).await {
                Ok(due) => {
                    for webhook_id in due {
                        running.entry(webhook_id).or_insert_with(|| {
                            let context = self.context.clone();
                            tokio::spawn(serve_endpoint(context, webhook_id, shutdown.clone()))
                        });
                    }
                }
                Err(error) => tracing::warn!(%error, "looking for due webhook deliveries"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.context.settings.poll_interval()) => {}
                _ = shutdown.wait() => {}
            }
        }
        for (_, task) in running {
            let _ = task.await;
        }
    }
}

impl Dispatcher {
    async fn purge(&self) {
        let retention = self.context.settings.retention();
        match queue::purge_finished(&self.context.pool, retention).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "old webhook deliveries forgotten"),
            Err(error) => tracing::warn!(%error, "forgetting old webhook deliveries"),
        }
    }
}

/// How often finished deliveries past their retention are forgotten.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Delivers the endpoint's due deliveries, a few at a time, until none is
/// due or the worker is stopping.
async fn serve_endpoint(context: Arc<Context>, webhook_id: Uuid, shutdown: Shutdown) {
    let settings = &context.settings;
    while !shutdown.is_triggered() {
        let claimed = match queue::claim(
            &context.pool,
            webhook_id,
            settings.webhook_max_in_flight,
            settings.lease(),
        )
        .await
        {
            Ok(claimed) if claimed.is_empty() => return,
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, %webhook_id, "claiming webhook deliveries");
                return;
            }
        };
        let target = target(&context, webhook_id).await;
        let attempts = claimed
            .iter()
            .map(|delivery| deliver(&context, &target, delivery));
        futures_util::future::join_all(attempts).await;
    }
}

/// Why a batch cannot be sent at all.
#[derive(Debug)]
enum Unsendable {
    /// Deleted or disabled: its pending deliveries are given up.
    Gone(&'static str),
    /// Worth trying again later (the address check, the database).
    Failed(String),
}

async fn target(context: &Context, webhook_id: Uuid) -> Result<Target, Unsendable> {
    let failed = |error: &dyn std::error::Error| Unsendable::Failed(with_causes(error));
    let webhook = context
        .webhooks
        .load(&webhook_id.to_string())
        .await
        .map_err(|e| failed(&e))?;
    if !webhook.exists() {
        return Err(Unsendable::Gone("the webhook was deleted"));
    }
    if !webhook.is_enabled() {
        return Err(Unsendable::Gone("the webhook is disabled"));
    }
    let url = webhook
        .url()
        .ok_or(Unsendable::Gone("the webhook has no url"))?;
    let timeout = context.settings.timeout();
    let destination = tokio::time::timeout(timeout, context.settings.destinations.check(url))
        .await
        .map_err(|_| Unsendable::Failed("resolving the host timed out".into()))?
        .map_err(|e| failed(&e))?;
    let client = send::client_for(&destination, timeout).map_err(|e| failed(&e))?;
    let ids = webhook.signing_secret_ids(Utc::now());
    let secrets = context.secrets.load(&ids).await.map_err(|e| failed(&e))?;
    Ok(Target {
        url: destination.url,
        client,
        secrets,
    })
}

/// One attempt of one delivery, recorded with what comes next.
async fn deliver(context: &Context, target: &Result<Target, Unsendable>, delivery: &Claimed) {
    let started_at = Utc::now();
    let clock = Instant::now();
    let result = match target {
        Ok(target) => attempt(context, target, delivery).await,
        Err(Unsendable::Gone(reason)) => Err((None, (*reason).to_owned())),
        Err(Unsendable::Failed(reason)) => Err((None, reason.clone())),
    };
    let duration = clock.elapsed();
    let gone = matches!(target, Err(Unsendable::Gone(_)));
    let (next, outcome, status_code, error) = match result {
        Ok(status) => (Next::Delivered, Outcome::Delivered, Some(status), None),
        Err((status, error)) => {
            let failures = u32::try_from(delivery.failures + 1).unwrap_or(u32::MAX);
            let after = context
                .settings
                .retry_policy()
                .after_failure(failures, retry::jitter());
            match after {
                AfterFailure::RetryIn(delay) if !gone => {
                    let at = Utc::now() + delay;
                    (Next::RetryAt(at), Outcome::Failed, status, Some(error))
                }
                _ => (Next::Dead, Outcome::Dead, status, Some(error)),
            }
        }
    };
    metrics::record(outcome, duration);
    let attempt = Attempt {
        started_at,
        duration,
        status_code,
        error,
    };
    if let Err(error) = queue::record(&context.pool, delivery, &attempt, next).await {
        // The lease runs out and the delivery is tried again: at least once.
        tracing::warn!(%error, delivery_id = %delivery.delivery_id, "recording a webhook attempt");
    }
}

/// Builds, signs and sends the message: the status of a 2xx, or the
/// status (if any) and the reason it failed.
async fn attempt(
    context: &Context,
    target: &Target,
    delivery: &Claimed,
) -> Result<u16, (Option<u16>, String)> {
    let body = body::published(&context.pool, delivery.global_position)
        .await
        .map_err(|error| (None, with_causes(&error)))?;
    let id = delivery.event_id.to_string();
    let timestamp = Utc::now().timestamp();
    let signature = signing::signature_header(&target.secrets, &id, timestamp, &body)
        .map_err(|error| (None, with_causes(&error)))?;
    let message = Message {
        id: &id,
        timestamp,
        signature: &signature,
        body,
    };
    send::send(&target.client, &target.url, message)
        .await
        .map_err(|error| (error.status_code(), with_causes(&error)))
}

/// The error and its sources, `": "`-separated, for the attempt's record.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
