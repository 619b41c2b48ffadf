//! `audit_log`: one row per event of every aggregate type, the columns
//! auditors filter on. Unlike a view it folds nothing: a row is the event's
//! place in the log and the request that caused it. Payloads and the rest of
//! the metadata stay in the event store, so personal data has one copy.

use bus::Envelope;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Column, Value};

/// One row per event, keyed by its global position.
pub const AUDIT_LOG: &str = "audit_log";

/// A row of `audit_log`.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditLogRow {
    pub global_position: i64,
    pub transaction_id: i64,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    pub actor_id: Option<String>,
    pub api_key_id: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
}

impl AuditLogRow {
    /// The columns that identify a row.
    pub const KEY: &'static [&'static str] = &["global_position"];

    /// The row recording `envelope`.
    pub fn of(envelope: &Envelope) -> Self {
        let metadata = &envelope.metadata;
        Self {
            global_position: envelope.global_position,
            transaction_id: envelope.transaction_id,
            event_id: envelope.event_id,
            aggregate_type: envelope.aggregate_type.clone(),
            aggregate_id: envelope.aggregate_id.clone(),
            sequence: envelope.sequence,
            event_type: envelope.event_type.clone(),
            event_version: envelope.event_version.clone(),
            recorded_at: envelope.recorded_at,
            actor_id: metadata.actor_id.clone(),
            api_key_id: metadata.api_key_id.clone(),
            correlation_id: metadata.correlation_id.clone(),
            causation_id: metadata.causation_id.clone(),
        }
    }

    pub fn columns(&self) -> Vec<Column<'_>> {
        vec![
            Column::new("global_position", Value::BigInt(self.global_position)),
            Column::new("transaction_id", Value::BigInt(self.transaction_id)),
            Column::new("event_id", Value::Uuid(self.event_id)),
            Column::new("aggregate_type", Value::Text(&self.aggregate_type)),
            Column::new("aggregate_id", Value::Text(&self.aggregate_id)),
            Column::new("sequence", Value::BigInt(self.sequence)),
            Column::new("event_type", Value::Text(&self.event_type)),
            Column::new("event_version", Value::Text(&self.event_version)),
            Column::new("recorded_at", Value::Time(self.recorded_at)),
            Column::new("actor_id", Value::OptionalText(self.actor_id.as_deref())),
            Column::new(
                "api_key_id",
                Value::OptionalText(self.api_key_id.as_deref()),
            ),
            Column::new(
                "correlation_id",
                Value::OptionalText(self.correlation_id.as_deref()),
            ),
            Column::new(
                "causation_id",
                Value::OptionalText(self.causation_id.as_deref()),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use bus::EventMetadata;
    use chrono::TimeZone;
    use domain::{ContractEvent, RoleEvent};

    use super::*;

    fn envelope(metadata: EventMetadata) -> Envelope {
        Envelope {
            event_id: Uuid::from_u128(7),
            global_position: 42,
            transaction_id: 1234,
            aggregate_type: RoleEvent::AGGREGATE_TYPE.into(),
            aggregate_id: Uuid::from_u128(9).to_string(),
            sequence: 3,
            event_type: RoleEvent::DELETED.name().into(),
            event_version: RoleEvent::DELETED.version().into(),
            payload: serde_json::Value::Null,
            metadata,
            recorded_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        }
    }

    #[test]
    fn a_row_holds_the_events_place_in_the_log_and_who_caused_it() {
        let some = |value: &str| Some(value.to_owned());
        let full = EventMetadata {
            api_key_id: None,
            actor_id: some("admin"),
            correlation_id: some("request-1"),
            causation_id: some("command-1"),
            request_ip: some("192.0.2.1"),
            user_agent: some("agent/1"),
            occurred_at: Some(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 0).unwrap()),
        };
        let system = EventMetadata {
            correlation_id: some("sweep-1"),
            ..EventMetadata::default()
        };
        // metadata in, (actor_id, correlation_id, causation_id) out; the
        // client's address and agent stay in the event store only.
        let cases = [
            (full, (some("admin"), some("request-1"), some("command-1"))),
            (system, (None, some("sweep-1"), None)),
            (EventMetadata::default(), (None, None, None)),
        ];
        for (metadata, (actor_id, correlation_id, causation_id)) in cases {
            let event = envelope(metadata);
            let expected = AuditLogRow {
                global_position: 42,
                transaction_id: 1234,
                event_id: Uuid::from_u128(7),
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: Uuid::from_u128(9).to_string(),
                sequence: 3,
                event_type: event.event_type.clone(),
                event_version: event.event_version.clone(),
                recorded_at: event.recorded_at,
                actor_id,
                api_key_id: None,
                correlation_id,
                causation_id,
            };
            assert_eq!(AuditLogRow::of(&event), expected, "{:?}", event.metadata);
        }
    }

    #[test]
    fn every_column_is_written_once_the_key_included() {
        let row = AuditLogRow::of(&envelope(EventMetadata::default()));
        let names: Vec<&str> = row.columns().iter().map(|column| column.name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((names.len(), unique.len()), (13, 13));
        assert!(AuditLogRow::KEY.iter().all(|key| names.contains(key)));
    }
}
