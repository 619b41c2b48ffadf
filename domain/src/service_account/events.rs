use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::values::{ApiKeyHash, ServiceAccountDescription, ServiceAccountName};
use crate::contract::{EventType, PayloadField};
use crate::Permission;

/// What happened to a [`ServiceAccount`](super::ServiceAccount). A key is
/// carried by its id and its secret's digest; the secret itself was shown
/// once to whoever asked for it and is kept nowhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServiceAccountEvent {
    Created {
        service_account_id: Uuid,
        name: ServiceAccountName,
        description: ServiceAccountDescription,
    },
    NameChanged {
        name: ServiceAccountName,
    },
    DescriptionChanged {
        description: ServiceAccountDescription,
    },
    Disabled,
    Enabled,
    RoleAssigned {
        role_id: Uuid,
    },
    RoleUnassigned {
        role_id: Uuid,
    },
    KeyIssued {
        key_id: Uuid,
        description: ServiceAccountDescription,
        /// The permissions the key may use, of those the account holds.
        scope: BTreeSet<Permission>,
        expires_at: DateTime<Utc>,
        secret_hash: ApiKeyHash,
    },
    /// `key_id` was replaced by `replaced_by` (issued by the event before
    /// this one) and works until `valid_until`.
    KeyRotated {
        key_id: Uuid,
        replaced_by: Uuid,
        valid_until: DateTime<Utc>,
    },
    KeyRevoked {
        key_id: Uuid,
    },
    Erased,
}

impl ServiceAccountEvent {
    pub const CREATED: EventType = EventType::new("service_account.created", "Created");
    pub const NAME_CHANGED: EventType =
        EventType::new("service_account.name_changed", "NameChanged");
    pub const DESCRIPTION_CHANGED: EventType =
        EventType::new("service_account.description_changed", "DescriptionChanged");
    pub const DISABLED: EventType = EventType::new("service_account.disabled", "Disabled");
    pub const ENABLED: EventType = EventType::new("service_account.enabled", "Enabled");
    pub const ROLE_ASSIGNED: EventType =
        EventType::new("service_account.role_assigned", "RoleAssigned");
    pub const ROLE_UNASSIGNED: EventType =
        EventType::new("service_account.role_unassigned", "RoleUnassigned");
    pub const KEY_ISSUED: EventType = EventType::new("service_account.key_issued", "KeyIssued");
    pub const KEY_ROTATED: EventType = EventType::new("service_account.key_rotated", "KeyRotated");
    pub const KEY_REVOKED: EventType = EventType::new("service_account.key_revoked", "KeyRevoked");
    pub const ERASED: EventType = EventType::new("service_account.erased", "Erased");

    /// Every value [`DomainEvent::event_type`] can return.
    pub const EVENT_TYPES: &'static [EventType] = &[
        Self::CREATED,
        Self::NAME_CHANGED,
        Self::DESCRIPTION_CHANGED,
        Self::DISABLED,
        Self::ENABLED,
        Self::ROLE_ASSIGNED,
        Self::ROLE_UNASSIGNED,
        Self::KEY_ISSUED,
        Self::KEY_ROTATED,
        Self::KEY_REVOKED,
        Self::ERASED,
    ];

    /// Payload fields SQL reads (see [`crate::contract::PAYLOAD_FIELDS_READ_BY_SQL`]).
    pub const CREATED_NAME: PayloadField = Self::CREATED.field("name");
    pub const CREATED_DESCRIPTION: PayloadField = Self::CREATED.field("description");
    pub const NAME_CHANGED_NAME: PayloadField = Self::NAME_CHANGED.field("name");
    pub const DESCRIPTION_CHANGED_DESCRIPTION: PayloadField =
        Self::DESCRIPTION_CHANGED.field("description");
    pub const ROLE_ASSIGNED_ROLE_ID: PayloadField = Self::ROLE_ASSIGNED.field("role_id");
    pub const ROLE_UNASSIGNED_ROLE_ID: PayloadField = Self::ROLE_UNASSIGNED.field("role_id");
    pub const KEY_ISSUED_KEY_ID: PayloadField = Self::KEY_ISSUED.field("key_id");
    pub const KEY_ISSUED_DESCRIPTION: PayloadField = Self::KEY_ISSUED.field("description");
    pub const KEY_ISSUED_SCOPE: PayloadField = Self::KEY_ISSUED.field("scope");
    pub const KEY_ISSUED_EXPIRES_AT: PayloadField = Self::KEY_ISSUED.field("expires_at");
    pub const KEY_ISSUED_SECRET_HASH: PayloadField = Self::KEY_ISSUED.field("secret_hash");
    pub const KEY_ROTATED_KEY_ID: PayloadField = Self::KEY_ROTATED.field("key_id");
    pub const KEY_ROTATED_REPLACED_BY: PayloadField = Self::KEY_ROTATED.field("replaced_by");
    pub const KEY_ROTATED_VALID_UNTIL: PayloadField = Self::KEY_ROTATED.field("valid_until");
    pub const KEY_REVOKED_KEY_ID: PayloadField = Self::KEY_REVOKED.field("key_id");

    /// This event's entry in the event contract.
    pub fn contract_type(&self) -> EventType {
        match self {
            Self::Created { .. } => Self::CREATED,
            Self::NameChanged { .. } => Self::NAME_CHANGED,
            Self::DescriptionChanged { .. } => Self::DESCRIPTION_CHANGED,
            Self::Disabled => Self::DISABLED,
            Self::Enabled => Self::ENABLED,
            Self::RoleAssigned { .. } => Self::ROLE_ASSIGNED,
            Self::RoleUnassigned { .. } => Self::ROLE_UNASSIGNED,
            Self::KeyIssued { .. } => Self::KEY_ISSUED,
            Self::KeyRotated { .. } => Self::KEY_ROTATED,
            Self::KeyRevoked { .. } => Self::KEY_REVOKED,
            Self::Erased => Self::ERASED,
        }
    }

    /// One readable line for auditors.
    pub fn summary(&self) -> String {
        match self {
            Self::Created { name, .. } => format!("service account {name} created"),
            Self::NameChanged { name } => format!("name set to {name}"),
            Self::DescriptionChanged { .. } => "description changed".to_owned(),
            Self::Disabled => "disabled".to_owned(),
            Self::Enabled => "enabled".to_owned(),
            Self::RoleAssigned { role_id } => format!("role {role_id} assigned"),
            Self::RoleUnassigned { role_id } => format!("role {role_id} unassigned"),
            Self::KeyIssued {
                key_id,
                scope,
                expires_at,
                ..
            } => format!(
                "API key {key_id} issued for {}, expiring {}",
                names(scope),
                expires_at.to_rfc3339()
            ),
            Self::KeyRotated {
                key_id,
                replaced_by,
                valid_until,
            } => format!(
                "API key {key_id} replaced by {replaced_by}; it works until {}",
                valid_until.to_rfc3339()
            ),
            Self::KeyRevoked { key_id } => format!("API key {key_id} revoked"),
            Self::Erased => "erased".to_owned(),
        }
    }

    /// Replaces a key's digest with [`crate::REDACTED`].
    pub fn redact_secrets(&mut self) {
        if let Self::KeyIssued { secret_hash, .. } = self {
            *secret_hash = ApiKeyHash::redacted();
        }
    }
}

fn names(permissions: &BTreeSet<Permission>) -> String {
    if permissions.is_empty() {
        return "no permission".to_owned();
    }
    permissions
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl DomainEvent for ServiceAccountEvent {
    fn event_type(&self) -> String {
        self.contract_type().name().to_owned()
    }

    fn event_version(&self) -> String {
        self.contract_type().version().to_owned()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn key_issued() -> ServiceAccountEvent {
        ServiceAccountEvent::KeyIssued {
            key_id: Uuid::from_u128(2),
            description: ServiceAccountDescription::parse("deploys").unwrap(),
            scope: BTreeSet::from([Permission::UsersRead]),
            expires_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            secret_hash: ApiKeyHash::new("0a08".repeat(16)),
        }
    }

    pub(crate) fn all_events() -> Vec<ServiceAccountEvent> {
        vec![
            ServiceAccountEvent::Created {
                service_account_id: Uuid::from_u128(1),
                name: ServiceAccountName::parse("ci").unwrap(),
                description: ServiceAccountDescription::parse("the CI").unwrap(),
            },
            ServiceAccountEvent::NameChanged {
                name: ServiceAccountName::parse("ci-2").unwrap(),
            },
            ServiceAccountEvent::DescriptionChanged {
                description: ServiceAccountDescription::parse("").unwrap(),
            },
            ServiceAccountEvent::Disabled,
            ServiceAccountEvent::Enabled,
            ServiceAccountEvent::RoleAssigned {
                role_id: Uuid::from_u128(9),
            },
            ServiceAccountEvent::RoleUnassigned {
                role_id: Uuid::from_u128(9),
            },
            key_issued(),
            ServiceAccountEvent::KeyRotated {
                key_id: Uuid::from_u128(2),
                replaced_by: Uuid::from_u128(3),
                valid_until: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            },
            ServiceAccountEvent::KeyRevoked {
                key_id: Uuid::from_u128(3),
            },
            ServiceAccountEvent::Erased,
        ]
    }

    #[test]
    fn every_event_has_a_summary_and_a_contract_type() {
        let types: Vec<String> = all_events().iter().map(DomainEvent::event_type).collect();
        let names: Vec<&str> = ServiceAccountEvent::EVENT_TYPES
            .iter()
            .map(|t| t.name())
            .collect();
        assert_eq!(types, names);
        assert_eq!(
            key_issued().summary(),
            "API key 00000000-0000-0000-0000-000000000002 issued for users:read, \
             expiring 2027-01-15T08:00:00+00:00"
        );
        for event in all_events() {
            assert!(!event.summary().is_empty());
        }
    }

    #[test]
    fn every_event_round_trips_through_json() {
        for event in all_events() {
            let json = serde_json::to_string(&event).unwrap();
            let back: ServiceAccountEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn a_key_is_stored_as_its_digest_and_redacted_on_the_way_out() {
        let mut event = key_issued();
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"KeyIssued": {
                "key_id": "00000000-0000-0000-0000-000000000002",
                "description": "deploys",
                "scope": ["users:read"],
                "expires_at": "2027-01-15T08:00:00Z",
                "secret_hash": "0a08".repeat(16),
            }})
        );
        event.redact_secrets();
        let json = serde_json::to_string(&event).unwrap();
        assert!(!json.contains("0a08"), "{json}");
        assert!(json.contains(crate::REDACTED), "{json}");
    }
}
