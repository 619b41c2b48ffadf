//! One stored event as every audit route shows it: the list, a stream's
//! history and each line of an export.

use app::audit::AuditedEvent;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// Request context recorded with the event.
#[derive(Serialize, ToSchema)]
pub struct AuditMetadata {
    /// The user or the service account.
    actor_id: Option<String>,
    /// The API key a service account acted with; absent for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_id: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    request_ip: Option<String>,
    user_agent: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
}

/// One stored event.
#[derive(Serialize, ToSchema)]
pub struct AuditEvent {
    event_id: Uuid,
    /// Dotted, e.g. `user.email_changed`.
    event_type: String,
    /// The version of `payload` (an older stored version is shown upcast).
    event_version: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    global_position: i64,
    recorded_at: DateTime<Utc>,
    /// As stored, with password and refresh-token hashes replaced by
    /// `[redacted]`: `{"<Variant>": {fields}}`, or `"<Variant>"` for an
    /// event without fields (`user.erased` is `"Erased"`).
    #[schema(value_type = serde_json::Value)]
    payload: serde_json::Value,
    metadata: AuditMetadata,
    /// One readable line, e.g. `email changed to bob@example.com (was ada@example.com)`.
    summary: String,
}

impl From<AuditedEvent> for AuditEvent {
    fn from(event: AuditedEvent) -> Self {
        let metadata = event.metadata;
        Self {
            event_id: event.event_id,
            event_type: event.event_type,
            event_version: event.event_version,
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            global_position: event.global_position,
            recorded_at: event.recorded_at,
            payload: event.payload,
            metadata: AuditMetadata {
                actor_id: metadata.actor_id,
                api_key_id: metadata.api_key_id,
                correlation_id: metadata.correlation_id,
                causation_id: metadata.causation_id,
                request_ip: metadata.request_ip,
                user_agent: metadata.user_agent,
                occurred_at: metadata.occurred_at,
            },
            summary: event.summary,
        }
    }
}
