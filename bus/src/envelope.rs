use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::BusError;

/// One stored event as it travels on the bus (JSON body of every message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub event_id: Uuid,
    pub global_position: i64,
    /// PostgreSQL xid8 of the appending transaction.
    pub transaction_id: i64,
    /// e.g. "order".
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    /// Dotted, e.g. "order.placed"; also the routing key.
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
}

/// Request context recorded with every event.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EventMetadata {
    pub actor_id: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub request_ip: Option<String>,
    pub user_agent: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    /// The API key a machine client acted with (its `actor_id` is then the
    /// service account). Absent, not null, when a person acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
}

/// The keys of the stored metadata object (`events.metadata`), for SQL that
/// filters on them.
pub mod metadata_keys {
    pub const ACTOR_ID: &str = "actor_id";
    pub const CORRELATION_ID: &str = "correlation_id";
    pub const CAUSATION_ID: &str = "causation_id";
    pub const REQUEST_IP: &str = "request_ip";
    pub const USER_AGENT: &str = "user_agent";
    pub const OCCURRED_AT: &str = "occurred_at";
    pub const API_KEY_ID: &str = "api_key_id";
}

use metadata_keys::*;

impl EventMetadata {
    /// Flattens the metadata; only present values get a key. `occurred_at` is RFC 3339.
    pub fn to_map(&self) -> HashMap<String, String> {
        let occurred_at = self.occurred_at.map(|at| at.to_rfc3339());
        [
            (ACTOR_ID, self.actor_id.clone()),
            (CORRELATION_ID, self.correlation_id.clone()),
            (CAUSATION_ID, self.causation_id.clone()),
            (REQUEST_IP, self.request_ip.clone()),
            (USER_AGENT, self.user_agent.clone()),
            (OCCURRED_AT, occurred_at),
            (API_KEY_ID, self.api_key_id.clone()),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key.to_owned(), value)))
        .collect()
    }

    /// Inverse of [`EventMetadata::to_map`]; an unparseable `occurred_at` becomes `None`.
    pub fn from_map(map: &HashMap<String, String>) -> Self {
        let get = |key: &str| map.get(key).cloned();
        Self {
            actor_id: get(ACTOR_ID),
            correlation_id: get(CORRELATION_ID),
            causation_id: get(CAUSATION_ID),
            request_ip: get(REQUEST_IP),
            user_agent: get(USER_AGENT),
            occurred_at: map
                .get(OCCURRED_AT)
                .and_then(|raw| DateTime::parse_from_rfc3339(raw).ok())
                .map(|at| at.with_timezone(&Utc)),
            api_key_id: get(API_KEY_ID),
        }
    }
}

impl Envelope {
    /// Routing key on the topic exchange: the dotted event type, e.g. "order.placed".
    pub fn routing_key(&self) -> String {
        self.event_type.clone()
    }

    /// JSON body of the AMQP message.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an Envelope always serializes to JSON")
    }

    /// Parses a message body produced by [`Envelope::to_json`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, BusError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn full_metadata() -> EventMetadata {
        EventMetadata {
            api_key_id: None,
            actor_id: Some("actor-1".into()),
            correlation_id: Some("corr-1".into()),
            causation_id: Some("cause-1".into()),
            request_ip: Some("10.0.0.1".into()),
            user_agent: Some("curl/8".into()),
            occurred_at: Some(Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap()),
        }
    }

    fn envelope() -> Envelope {
        Envelope {
            event_id: Uuid::new_v4(),
            global_position: 42,
            transaction_id: 1234,
            aggregate_type: "thing".into(),
            aggregate_id: "t-1".into(),
            sequence: 3,
            event_type: "thing.changed".into(),
            event_version: "1".into(),
            payload: serde_json::json!({"email": "a@example.com"}),
            metadata: full_metadata(),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn metadata_map_round_trip() {
        let metadata = full_metadata();
        let map = metadata.to_map();
        assert_eq!(map.len(), 6);
        assert_eq!(map["occurred_at"], "2024-05-06T07:08:09+00:00");
        assert_eq!(EventMetadata::from_map(&map), metadata);
    }

    #[test]
    fn metadata_map_only_has_present_values() {
        let metadata = EventMetadata {
            correlation_id: Some("c".into()),
            ..EventMetadata::default()
        };
        let map = metadata.to_map();
        assert_eq!(map.len(), 1);
        assert_eq!(EventMetadata::from_map(&map), metadata);
        assert!(EventMetadata::default().to_map().is_empty());
    }

    #[test]
    fn metadata_unparseable_occurred_at_is_none() {
        let map = HashMap::from([
            ("occurred_at".to_owned(), "yesterday".to_owned()),
            ("actor_id".to_owned(), "a".to_owned()),
        ]);
        let metadata = EventMetadata::from_map(&map);
        assert_eq!(metadata.occurred_at, None);
        assert_eq!(metadata.actor_id.as_deref(), Some("a"));
    }

    #[test]
    fn routing_key_is_event_type() {
        assert_eq!(envelope().routing_key(), "thing.changed");
    }

    #[test]
    fn json_round_trip() {
        let event = envelope();
        assert_eq!(Envelope::from_json(&event.to_json()).unwrap(), event);
        assert!(matches!(
            Envelope::from_json(b"not json"),
            Err(BusError::Decode(_))
        ));
    }
}
