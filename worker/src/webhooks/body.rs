//! The body of a delivery: the event as the relay publishes it, read from
//! the event store when it is sent (so a person erased meanwhile reads
//! `[erased]`), with secrets redacted.

use bus::Envelope;
use infra::event_log::{self, EventRow};
use sqlx::PgPool;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("reading the event")]
    Database(#[from] sqlx::Error),
    #[error("the event at position {0} is not in the store")]
    Missing(i64),
    #[error("the event could not be redacted")]
    Redaction(#[from] domain::RedactionError),
}

pub async fn published(pool: &PgPool, global_position: i64) -> Result<Vec<u8>, BodyError> {
    let sql = format!(
        "SELECT {} FROM events WHERE global_position = $1",
        event_log::columns_of("events")
    );
    let row: Option<EventRow> = sqlx::query_as(&sql)
        .bind(global_position)
        .fetch_optional(pool)
        .await?;
    let mut envelope = Envelope::from(row.ok_or(BodyError::Missing(global_position))?);
    let current = domain::redact_event_payload(
        &envelope.aggregate_type,
        &envelope.event_type,
        &envelope.event_version,
        &mut envelope.payload,
    )?;
    if let Some(version) = current {
        envelope.event_version = version.to_owned();
    }
    Ok(envelope.to_json())
}
