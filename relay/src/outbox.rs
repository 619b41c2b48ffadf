//! The outbox read: the next committed events in publishing order, below
//! the log's horizon (`infra::event_log::HORIZON`, so no row is ever
//! skipped), made ready to send: secrets redacted, each event's message
//! (routing key, JSON body, properties) built once. The JSON columns come
//! as text and are parsed once, straight into what the message needs.

use std::collections::HashMap;

use bus::{Envelope, EventMetadata, Message};
use chrono::{DateTime, Utc};
use infra::event_log::{LogPosition, HORIZON};
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

/// A batch of events read and made ready to send.
#[derive(Debug)]
pub struct ReadyBatch {
    /// Where the batch ends in publishing order.
    pub last: LogPosition,
    pub newest_recorded: DateTime<Utc>,
    pub messages: Vec<Message>,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("reading the event store")]
    Read(#[from] sqlx::Error),
    #[error("event {event_id}'s payload is not JSON")]
    Payload {
        event_id: Uuid,
        #[source]
        source: serde_json::Error,
    },
    #[error("redacting event {event_id}")]
    Redaction {
        event_id: Uuid,
        #[source]
        source: domain::RedactionError,
    },
    #[error("building event {event_id}'s message")]
    Message {
        event_id: Uuid,
        #[source]
        source: bus::BusError,
    },
}

/// One row of `events` with its JSON columns as text.
#[derive(FromRow)]
struct OutboxRow {
    event_id: Uuid,
    global_position: i64,
    transaction_id: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
    recorded_at: DateTime<Utc>,
}

/// Up to `limit` committed events after `after`, ready to send; `None`
/// when there is none.
pub async fn ready_after(
    db: impl PgExecutor<'_>,
    after: LogPosition,
    limit: i64,
) -> Result<Option<ReadyBatch>, OutboxError> {
    let sql = format!(
        "SELECT event_id, global_position, transaction_id::text::bigint AS transaction_id, \
                aggregate_type, aggregate_id, sequence, event_type, event_version, \
                payload::text AS payload, metadata::text AS metadata, recorded_at \
         FROM events \
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
           AND transaction_id < {HORIZON} \
         ORDER BY events.transaction_id, events.global_position LIMIT $3"
    );
    let rows: Vec<OutboxRow> = sqlx::query_as(&sql)
        .bind(after.transaction_id)
        .bind(after.global_position)
        .bind(limit)
        .fetch_all(db)
        .await?;
    let Some(last) = rows.last().map(OutboxRow::position) else {
        return Ok(None);
    };
    let newest_recorded = rows
        .iter()
        .map(|row| row.recorded_at)
        .max()
        .expect("a batch has an event");
    let messages = rows
        .into_iter()
        .map(OutboxRow::into_message)
        .collect::<Result<_, _>>()?;
    Ok(Some(ReadyBatch {
        last,
        newest_recorded,
        messages,
    }))
}

impl OutboxRow {
    fn position(&self) -> LogPosition {
        LogPosition {
            transaction_id: self.transaction_id,
            global_position: self.global_position,
        }
    }

    /// The event's message. Password and refresh-token hashes stay in the
    /// event store; the broker never carries them. The event leaves as the
    /// contract's current version.
    fn into_message(self) -> Result<Message, OutboxError> {
        let event_id = self.event_id;
        let envelope = self.into_envelope()?;
        Message::of(&envelope).map_err(|source| OutboxError::Message { event_id, source })
    }

    fn into_envelope(self) -> Result<Envelope, OutboxError> {
        let event_id = self.event_id;
        let mut payload = serde_json::from_str(&self.payload)
            .map_err(|source| OutboxError::Payload { event_id, source })?;
        let mut event_version = self.event_version;
        let current = domain::redact_event_payload(
            &self.aggregate_type,
            &self.event_type,
            &event_version,
            &mut payload,
        )
        .map_err(|source| OutboxError::Redaction { event_id, source })?;
        if let Some(version) = current {
            version.clone_into(&mut event_version);
        }
        Ok(Envelope {
            event_id,
            global_position: self.global_position,
            transaction_id: self.transaction_id,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version,
            payload,
            metadata: metadata(&self.metadata),
            recorded_at: self.recorded_at,
        })
    }
}

/// The stored metadata object as the envelope carries it; not an object of
/// strings reads as empty, as `infra::event_log` reads it.
fn metadata(stored: &str) -> EventMetadata {
    let map: HashMap<String, String> = serde_json::from_str(stored).unwrap_or_default();
    EventMetadata::from_map(&map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_reads_the_stored_strings() {
        let stored = r#"{"actor_id": "a", "correlation_id": "c", "occurred_at": "2024-05-06T07:08:09+00:00"}"#;
        let read = metadata(stored);
        assert_eq!(read.actor_id.as_deref(), Some("a"));
        assert_eq!(read.correlation_id.as_deref(), Some("c"));
        assert!(read.occurred_at.is_some());
    }

    #[test]
    fn metadata_that_is_not_an_object_of_strings_is_empty() {
        assert_eq!(metadata(r#"{"actor_id": 5}"#), EventMetadata::default());
        assert_eq!(metadata("null"), EventMetadata::default());
    }
}
