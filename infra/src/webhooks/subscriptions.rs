//! Every webhook as its events make it, read from the event store (a few
//! short streams), with where each event stands in publishing order, so a
//! delivery decision can use the subscription as it was when the event
//! was published.

use bus::Envelope;
use cqrs_es::Aggregate;
use domain::{Webhook, WebhookEvent};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::event_log::{self, EventRow, LogPosition};

/// One webhook's events in sequence order.
#[derive(Debug, Clone)]
pub struct History {
    pub webhook_id: Uuid,
    events: Vec<(LogPosition, WebhookEvent)>,
}

impl History {
    /// The webhook with every event published before `position` applied.
    pub fn as_of(&self, position: LogPosition) -> Webhook {
        fold(
            self.events
                .iter()
                .filter(|(at, _)| *at < position)
                .map(|(_, event)| event.clone()),
        )
    }

    /// The webhook now.
    pub fn current(&self) -> Webhook {
        fold(self.events.iter().map(|(_, event)| event.clone()))
    }
}

fn fold(events: impl Iterator<Item = WebhookEvent>) -> Webhook {
    let mut webhook = Webhook::default();
    for event in events {
        webhook.apply(event);
    }
    webhook
}

/// Every webhook's history.
#[derive(Debug, Clone, Default)]
pub struct Subscriptions {
    pub histories: Vec<History>,
}

/// Why the subscriptions could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionsError {
    #[error("reading webhook events")]
    Database(#[from] sqlx::Error),
    #[error("a webhook event does not decode")]
    Decode(#[from] domain::DecodeError),
    #[error("webhook id {0:?} is not a UUID")]
    BadId(String),
}

impl Subscriptions {
    pub async fn load(db: impl PgExecutor<'_>) -> Result<Self, SubscriptionsError> {
        let sql = format!(
            "SELECT {} FROM events WHERE aggregate_type = $1 ORDER BY aggregate_id, sequence",
            event_log::columns_of("events")
        );
        let rows: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(Webhook::TYPE)
            .fetch_all(db)
            .await?;
        let mut histories: Vec<History> = Vec::new();
        for envelope in rows.into_iter().map(Envelope::from) {
            let webhook_id = Uuid::parse_str(&envelope.aggregate_id)
                .map_err(|_| SubscriptionsError::BadId(envelope.aggregate_id.clone()))?;
            let entry = (LogPosition::of(&envelope), event_log::decode(&envelope)?);
            match histories.last_mut() {
                Some(last) if last.webhook_id == webhook_id => last.events.push(entry),
                _ => histories.push(History {
                    webhook_id,
                    events: vec![entry],
                }),
            }
        }
        Ok(Self { histories })
    }

    /// Every webhook registered and not deleted, as it is now.
    pub fn live(&self) -> impl Iterator<Item = Webhook> + '_ {
        self.histories
            .iter()
            .map(History::current)
            .filter(Webhook::exists)
    }

    /// The webhooks that were subscribed to this event when it was
    /// published: created before it, enabled and matching its type.
    pub fn subscribers(&self, envelope: &Envelope) -> Vec<Uuid> {
        let position = LogPosition::of(envelope);
        self.histories
            .iter()
            .filter(|history| history.as_of(position).subscribes_to(&envelope.event_type))
            .map(|history| history.webhook_id)
            .collect()
    }
}
