use std::collections::BTreeSet;

use cqrs_es::DomainEvent;

use crate::contract::{EventType, PayloadField};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::values::{Permission, RoleDescription, RoleName};

/// What happened to a [`Role`](super::Role). Each event carries the resulting values so
/// read models only copy them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RoleEvent {
    Created {
        role_id: Uuid,
        name: RoleName,
        description: RoleDescription,
        permissions: BTreeSet<Permission>,
    },
    /// Carries the whole new set.
    PermissionsChanged { permissions: BTreeSet<Permission> },
    /// Carries the name so its reservation can be released.
    Deleted { name: RoleName },
}

impl RoleEvent {
    pub const CREATED: EventType = EventType::new("role.created", "Created");
    pub const PERMISSIONS_CHANGED: EventType =
        EventType::new("role.permissions_changed", "PermissionsChanged");
    pub const DELETED: EventType = EventType::new("role.deleted", "Deleted");

    /// Every value [`DomainEvent::event_type`] can return.
    pub const EVENT_TYPES: &'static [EventType] =
        &[Self::CREATED, Self::PERMISSIONS_CHANGED, Self::DELETED];

    /// Payload fields SQL reads (see [`crate::contract::PAYLOAD_FIELDS_READ_BY_SQL`]).
    pub const CREATED_NAME: PayloadField = Self::CREATED.field("name");
    pub const CREATED_PERMISSIONS: PayloadField = Self::CREATED.field("permissions");
    pub const PERMISSIONS_CHANGED_PERMISSIONS: PayloadField =
        Self::PERMISSIONS_CHANGED.field("permissions");

    /// This event's entry in the event contract.
    pub fn contract_type(&self) -> EventType {
        match self {
            Self::Created { .. } => Self::CREATED,
            Self::PermissionsChanged { .. } => Self::PERMISSIONS_CHANGED,
            Self::Deleted { .. } => Self::DELETED,
        }
    }

    /// One readable line for auditors.
    pub fn summary(&self) -> String {
        let names = |permissions: &BTreeSet<Permission>| {
            if permissions.is_empty() {
                "none".to_owned()
            } else {
                permissions
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        match self {
            Self::Created {
                name, permissions, ..
            } => format!(
                "role {} created with permissions: {}",
                name.as_str(),
                names(permissions)
            ),
            Self::PermissionsChanged { permissions } => {
                format!("permissions set to: {}", names(permissions))
            }
            Self::Deleted { name } => format!("role {} deleted", name.as_str()),
        }
    }

    /// Role events carry no secrets: nothing to replace. Present so every event type
    /// is redacted the same way before it leaves the service.
    pub fn redact_secrets(&mut self) {
        match self {
            Self::Created { .. } | Self::PermissionsChanged { .. } | Self::Deleted { .. } => {}
        }
    }
}

impl DomainEvent for RoleEvent {
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

    fn created() -> RoleEvent {
        RoleEvent::Created {
            role_id: Uuid::nil(),
            name: RoleName::parse("support").unwrap(),
            description: RoleDescription::parse("Support staff").unwrap(),
            permissions: BTreeSet::from([Permission::UsersRead, Permission::SessionsRevoke]),
        }
    }

    pub(crate) fn all_events() -> Vec<RoleEvent> {
        vec![
            created(),
            RoleEvent::PermissionsChanged {
                permissions: BTreeSet::from([Permission::AuditRead]),
            },
            RoleEvent::Deleted {
                name: RoleName::parse("support").unwrap(),
            },
        ]
    }

    #[test]
    fn every_event_has_a_summary() {
        let summaries: Vec<String> = all_events().iter().map(RoleEvent::summary).collect();
        assert_eq!(
            summaries,
            [
                "role support created with permissions: users:read, sessions:revoke",
                "permissions set to: audit:read",
                "role support deleted",
            ]
        );
        assert_eq!(summaries.len(), RoleEvent::EVENT_TYPES.len());
        assert_eq!(
            RoleEvent::PermissionsChanged {
                permissions: BTreeSet::new()
            }
            .summary(),
            "permissions set to: none"
        );
    }

    #[test]
    fn every_event_round_trips_through_json() {
        for event in all_events() {
            let json = serde_json::to_string(&event).unwrap();
            let back: RoleEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn payload_is_externally_tagged_with_plain_string_values() {
        assert_eq!(
            serde_json::to_value(created()).unwrap(),
            json!({"Created": {
                "role_id": "00000000-0000-0000-0000-000000000000",
                "name": "support",
                "description": "Support staff",
                "permissions": ["users:read", "sessions:revoke"],
            }})
        );
        assert_eq!(
            serde_json::to_value(RoleEvent::PermissionsChanged {
                permissions: BTreeSet::new()
            })
            .unwrap(),
            json!({"PermissionsChanged": {"permissions": []}})
        );
    }

    #[test]
    fn deserializing_an_unknown_permission_fails() {
        let payload = json!({"PermissionsChanged": {"permissions": ["users:delete"]}});
        assert!(serde_json::from_value::<RoleEvent>(payload).is_err());
    }

    #[test]
    fn deserializing_an_invalid_name_fails() {
        let payload = json!({"Deleted": {"name": "no spaces"}});
        assert!(serde_json::from_value::<RoleEvent>(payload).is_err());
    }

    #[test]
    fn event_types_are_stable_dotted_names() {
        let types: Vec<String> = all_events().iter().map(DomainEvent::event_type).collect();
        let names: Vec<&str> = RoleEvent::EVENT_TYPES.iter().map(|t| t.name()).collect();
        assert_eq!(types, names);
        assert!(all_events().iter().all(|e| e.event_version() == "1"));
    }

    #[test]
    fn redact_secrets_changes_nothing() {
        for original in all_events() {
            let mut redacted = original.clone();
            redacted.redact_secrets();
            assert_eq!(redacted, original);
        }
    }
}
