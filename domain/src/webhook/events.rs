use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::values::{EventTypePatterns, WebhookDescription, WebhookUrl};
use crate::contract::EventType;

/// What happened to a [`Webhook`](super::Webhook). A signing secret is
/// named by its id only: the secret stays out of the event store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WebhookEvent {
    Registered {
        webhook_id: Uuid,
        url: WebhookUrl,
        event_types: EventTypePatterns,
        description: WebhookDescription,
        secret_id: Uuid,
    },
    UrlChanged {
        url: WebhookUrl,
    },
    EventTypesChanged {
        event_types: EventTypePatterns,
    },
    DescriptionChanged {
        description: WebhookDescription,
    },
    Disabled,
    Enabled,
    SecretRotated {
        secret_id: Uuid,
        previous_secret_id: Uuid,
        previous_valid_until: DateTime<Utc>,
    },
    Deleted,
}

impl WebhookEvent {
    pub const REGISTERED: EventType = EventType::new("webhook.registered", "Registered");
    pub const URL_CHANGED: EventType = EventType::new("webhook.url_changed", "UrlChanged");
    pub const EVENT_TYPES_CHANGED: EventType =
        EventType::new("webhook.event_types_changed", "EventTypesChanged");
    pub const DESCRIPTION_CHANGED: EventType =
        EventType::new("webhook.description_changed", "DescriptionChanged");
    pub const DISABLED: EventType = EventType::new("webhook.disabled", "Disabled");
    pub const ENABLED: EventType = EventType::new("webhook.enabled", "Enabled");
    pub const SECRET_ROTATED: EventType = EventType::new("webhook.secret_rotated", "SecretRotated");
    pub const DELETED: EventType = EventType::new("webhook.deleted", "Deleted");

    /// Every value [`DomainEvent::event_type`] can return.
    pub const EVENT_TYPES: &'static [EventType] = &[
        Self::REGISTERED,
        Self::URL_CHANGED,
        Self::EVENT_TYPES_CHANGED,
        Self::DESCRIPTION_CHANGED,
        Self::DISABLED,
        Self::ENABLED,
        Self::SECRET_ROTATED,
        Self::DELETED,
    ];

    /// This event's entry in the event contract.
    pub fn contract_type(&self) -> EventType {
        match self {
            Self::Registered { .. } => Self::REGISTERED,
            Self::UrlChanged { .. } => Self::URL_CHANGED,
            Self::EventTypesChanged { .. } => Self::EVENT_TYPES_CHANGED,
            Self::DescriptionChanged { .. } => Self::DESCRIPTION_CHANGED,
            Self::Disabled => Self::DISABLED,
            Self::Enabled => Self::ENABLED,
            Self::SecretRotated { .. } => Self::SECRET_ROTATED,
            Self::Deleted => Self::DELETED,
        }
    }

    /// One readable line for auditors.
    pub fn summary(&self) -> String {
        let types = |event_types: &EventTypePatterns| {
            event_types
                .iter()
                .map(|pattern| pattern.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Self::Registered {
                url, event_types, ..
            } => format!("webhook to {url} registered for: {}", types(event_types)),
            Self::UrlChanged { url } => format!("url set to {url}"),
            Self::EventTypesChanged { event_types } => {
                format!("event types set to: {}", types(event_types))
            }
            Self::DescriptionChanged { .. } => "description changed".to_owned(),
            Self::Disabled => "disabled".to_owned(),
            Self::Enabled => "enabled".to_owned(),
            Self::SecretRotated {
                previous_valid_until,
                ..
            } => format!(
                "signing secret rotated; the previous one signs until {}",
                previous_valid_until.to_rfc3339()
            ),
            Self::Deleted => "deleted".to_owned(),
        }
    }

    /// Webhook events carry no secrets (a secret's id only): nothing to
    /// replace. Present so every event type is redacted the same way.
    pub fn redact_secrets(&mut self) {}
}

impl DomainEvent for WebhookEvent {
    fn event_type(&self) -> String {
        self.contract_type().name().to_owned()
    }

    fn event_version(&self) -> String {
        self.contract_type().version().to_owned()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::webhook::EventTypePattern;
    use serde_json::json;

    pub(crate) fn patterns(values: &[&str]) -> EventTypePatterns {
        let set: BTreeSet<EventTypePattern> = values
            .iter()
            .map(|value| EventTypePattern::parse(value).unwrap())
            .collect();
        EventTypePatterns::new(set).unwrap()
    }

    pub(crate) fn registered() -> WebhookEvent {
        WebhookEvent::Registered {
            webhook_id: Uuid::nil(),
            url: WebhookUrl::parse("https://hooks.example.com/in").unwrap(),
            event_types: patterns(&["user.*", "session.revoked"]),
            description: WebhookDescription::parse("CRM").unwrap(),
            secret_id: Uuid::from_u128(1),
        }
    }

    pub(crate) fn all_events() -> Vec<WebhookEvent> {
        vec![
            registered(),
            WebhookEvent::UrlChanged {
                url: WebhookUrl::parse("https://hooks.example.com/v2").unwrap(),
            },
            WebhookEvent::EventTypesChanged {
                event_types: patterns(&["*"]),
            },
            WebhookEvent::DescriptionChanged {
                description: WebhookDescription::parse("").unwrap(),
            },
            WebhookEvent::Disabled,
            WebhookEvent::Enabled,
            WebhookEvent::SecretRotated {
                secret_id: Uuid::from_u128(2),
                previous_secret_id: Uuid::from_u128(1),
                previous_valid_until: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            },
            WebhookEvent::Deleted,
        ]
    }

    #[test]
    fn every_event_has_a_summary_and_a_contract_type() {
        let summaries: Vec<String> = all_events().iter().map(WebhookEvent::summary).collect();
        assert_eq!(
            summaries,
            [
                "webhook to https://hooks.example.com/in registered for: session.revoked, user.*",
                "url set to https://hooks.example.com/v2",
                "event types set to: *",
                "description changed",
                "disabled",
                "enabled",
                "signing secret rotated; the previous one signs until 2027-01-15T08:00:00+00:00",
                "deleted",
            ]
        );
        let types: Vec<String> = all_events().iter().map(DomainEvent::event_type).collect();
        let names: Vec<&str> = WebhookEvent::EVENT_TYPES.iter().map(|t| t.name()).collect();
        assert_eq!(types, names);
    }

    #[test]
    fn every_event_round_trips_through_json() {
        for event in all_events() {
            let json = serde_json::to_string(&event).unwrap();
            let back: WebhookEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn the_payload_names_the_secret_by_id_only() {
        assert_eq!(
            serde_json::to_value(registered()).unwrap(),
            json!({"Registered": {
                "webhook_id": "00000000-0000-0000-0000-000000000000",
                "url": "https://hooks.example.com/in",
                "event_types": ["session.revoked", "user.*"],
                "description": "CRM",
                "secret_id": "00000000-0000-0000-0000-000000000001",
            }})
        );
        assert_eq!(
            serde_json::to_value(WebhookEvent::Disabled).unwrap(),
            json!("Disabled")
        );
    }
}
