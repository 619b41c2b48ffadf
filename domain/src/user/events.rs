use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;

use crate::contract::{EventType, PayloadField};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::email::Email;
use super::values::{DisplayName, PasswordHash};

/// What happened to a [`User`](super::User). Each event carries the resulting values so
/// read models only copy them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    Registered {
        user_id: Uuid,
        email: Email,
        display_name: DisplayName,
        password_hash: PasswordHash,
    },
    EmailChanged {
        email: Email,
        previous_email: Email,
    },
    DisplayNameChanged {
        display_name: DisplayName,
    },
    PasswordChanged {
        password_hash: PasswordHash,
    },
    Deactivated,
    Reactivated,
    RoleAssigned {
        role_id: Uuid,
    },
    RoleUnassigned {
        role_id: Uuid,
    },
    LoginFailed {
        ip: Option<String>,
        failed_at: DateTime<Utc>,
    },
    /// Logins are refused until `until`; the lock ends by itself then.
    Locked {
        until: DateTime<Utc>,
        failures: u32,
    },
    /// An operator ended the lock early.
    Unlocked,
    /// The same password hashed with newer parameters. Not a password change.
    PasswordRehashed {
        password_hash: PasswordHash,
    },
    /// The person's data was erased: their personal values in stored events
    /// now read [`crate::ERASED`], and the user refuses every later command.
    Erased {
        erased_at: DateTime<Utc>,
    },
}

impl UserEvent {
    pub const REGISTERED: EventType = EventType::new("user.registered", "Registered");
    pub const EMAIL_CHANGED: EventType = EventType::new("user.email_changed", "EmailChanged");
    pub const DISPLAY_NAME_CHANGED: EventType =
        EventType::new("user.display_name_changed", "DisplayNameChanged");
    pub const PASSWORD_CHANGED: EventType =
        EventType::new("user.password_changed", "PasswordChanged");
    pub const DEACTIVATED: EventType = EventType::new("user.deactivated", "Deactivated");
    pub const REACTIVATED: EventType = EventType::new("user.reactivated", "Reactivated");
    pub const ROLE_ASSIGNED: EventType = EventType::new("user.role_assigned", "RoleAssigned");
    pub const ROLE_UNASSIGNED: EventType = EventType::new("user.role_unassigned", "RoleUnassigned");
    pub const LOGIN_FAILED: EventType = EventType::new("user.login_failed", "LoginFailed");
    pub const LOCKED: EventType = EventType::new("user.locked", "Locked");
    pub const UNLOCKED: EventType = EventType::new("user.unlocked", "Unlocked");
    pub const PASSWORD_REHASHED: EventType =
        EventType::new("user.password_rehashed", "PasswordRehashed");
    pub const ERASED: EventType = EventType::new("user.erased", "Erased");

    /// Every value [`DomainEvent::event_type`] can return.
    pub const EVENT_TYPES: &'static [EventType] = &[
        Self::REGISTERED,
        Self::EMAIL_CHANGED,
        Self::DISPLAY_NAME_CHANGED,
        Self::PASSWORD_CHANGED,
        Self::DEACTIVATED,
        Self::REACTIVATED,
        Self::ROLE_ASSIGNED,
        Self::ROLE_UNASSIGNED,
        Self::LOGIN_FAILED,
        Self::LOCKED,
        Self::UNLOCKED,
        Self::PASSWORD_REHASHED,
        Self::ERASED,
    ];

    /// Payload fields SQL reads (see [`crate::contract::PAYLOAD_FIELDS_READ_BY_SQL`]).
    pub const REGISTERED_EMAIL: PayloadField = Self::REGISTERED.field("email");
    pub const EMAIL_CHANGED_EMAIL: PayloadField = Self::EMAIL_CHANGED.field("email");
    pub const ROLE_ASSIGNED_ROLE_ID: PayloadField = Self::ROLE_ASSIGNED.field("role_id");
    pub const ROLE_UNASSIGNED_ROLE_ID: PayloadField = Self::ROLE_UNASSIGNED.field("role_id");

    /// Personal payload fields (see [`crate::erasure::PERSONAL_PAYLOAD_FIELDS`]).
    pub const REGISTERED_DISPLAY_NAME: PayloadField = Self::REGISTERED.field("display_name");
    pub const REGISTERED_PASSWORD_HASH: PayloadField = Self::REGISTERED.field("password_hash");
    pub const EMAIL_CHANGED_PREVIOUS_EMAIL: PayloadField =
        Self::EMAIL_CHANGED.field("previous_email");
    pub const DISPLAY_NAME_CHANGED_DISPLAY_NAME: PayloadField =
        Self::DISPLAY_NAME_CHANGED.field("display_name");
    pub const PASSWORD_CHANGED_PASSWORD_HASH: PayloadField =
        Self::PASSWORD_CHANGED.field("password_hash");
    pub const PASSWORD_REHASHED_PASSWORD_HASH: PayloadField =
        Self::PASSWORD_REHASHED.field("password_hash");
    pub const LOGIN_FAILED_IP: PayloadField = Self::LOGIN_FAILED.field("ip");

    /// This event's entry in the event contract.
    pub fn contract_type(&self) -> EventType {
        match self {
            Self::Registered { .. } => Self::REGISTERED,
            Self::EmailChanged { .. } => Self::EMAIL_CHANGED,
            Self::DisplayNameChanged { .. } => Self::DISPLAY_NAME_CHANGED,
            Self::PasswordChanged { .. } => Self::PASSWORD_CHANGED,
            Self::Deactivated => Self::DEACTIVATED,
            Self::Reactivated => Self::REACTIVATED,
            Self::RoleAssigned { .. } => Self::ROLE_ASSIGNED,
            Self::RoleUnassigned { .. } => Self::ROLE_UNASSIGNED,
            Self::LoginFailed { .. } => Self::LOGIN_FAILED,
            Self::Locked { .. } => Self::LOCKED,
            Self::Unlocked => Self::UNLOCKED,
            Self::PasswordRehashed { .. } => Self::PASSWORD_REHASHED,
            Self::Erased { .. } => Self::ERASED,
        }
    }

    /// One readable line for auditors; never mentions a secret.
    pub fn summary(&self) -> String {
        match self {
            Self::Registered {
                email,
                display_name,
                ..
            } => format!(
                "registered as {} ({})",
                email.as_str(),
                display_name.as_str()
            ),
            Self::EmailChanged {
                email,
                previous_email,
            } => format!(
                "email changed to {} (was {})",
                email.as_str(),
                previous_email.as_str()
            ),
            Self::DisplayNameChanged { display_name } => {
                format!("display name changed to {}", display_name.as_str())
            }
            Self::PasswordChanged { .. } => "password changed".to_owned(),
            Self::Deactivated => "deactivated".to_owned(),
            Self::Reactivated => "reactivated".to_owned(),
            Self::RoleAssigned { role_id } => format!("role {role_id} assigned"),
            Self::RoleUnassigned { role_id } => format!("role {role_id} unassigned"),
            Self::LoginFailed { ip, .. } => match ip {
                Some(ip) => format!("login failed from {ip}"),
                None => "login failed".to_owned(),
            },
            Self::Locked { until, failures } => format!(
                "locked until {} after {failures} failed logins",
                until.to_rfc3339()
            ),
            Self::Unlocked => "unlocked".to_owned(),
            Self::PasswordRehashed { .. } => "password rehashed with newer parameters".to_owned(),
            Self::Erased { .. } => "personal data erased".to_owned(),
        }
    }

    /// Replaces any password hash with [`PasswordHash::redacted`], for events that
    /// leave the service.
    pub fn redact_secrets(&mut self) {
        match self {
            Self::Registered { password_hash, .. }
            | Self::PasswordChanged { password_hash }
            | Self::PasswordRehashed { password_hash } => {
                *password_hash = PasswordHash::redacted();
            }
            Self::EmailChanged { .. }
            | Self::DisplayNameChanged { .. }
            | Self::Deactivated
            | Self::Reactivated
            | Self::RoleAssigned { .. }
            | Self::RoleUnassigned { .. }
            | Self::LoginFailed { .. }
            | Self::Locked { .. }
            | Self::Unlocked
            | Self::Erased { .. } => {}
        }
    }
}

impl DomainEvent for UserEvent {
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
    use chrono::TimeZone;
    use serde_json::json;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, second).unwrap()
    }

    fn registered() -> UserEvent {
        UserEvent::Registered {
            user_id: Uuid::nil(),
            email: Email::parse("alice@example.com").unwrap(),
            display_name: DisplayName::parse("Alice").unwrap(),
            password_hash: PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        }
    }

    pub(crate) fn all_events() -> Vec<UserEvent> {
        vec![
            registered(),
            UserEvent::EmailChanged {
                email: Email::parse("bob@example.com").unwrap(),
                previous_email: Email::parse("alice@example.com").unwrap(),
            },
            UserEvent::DisplayNameChanged {
                display_name: DisplayName::parse("Bob").unwrap(),
            },
            UserEvent::PasswordChanged {
                password_hash: PasswordHash::new("$argon2id$other".into()),
            },
            UserEvent::Deactivated,
            UserEvent::Reactivated,
            UserEvent::RoleAssigned {
                role_id: Uuid::from_u128(7),
            },
            UserEvent::RoleUnassigned {
                role_id: Uuid::from_u128(7),
            },
            UserEvent::LoginFailed {
                ip: Some("203.0.113.7".into()),
                failed_at: at(1),
            },
            UserEvent::Locked {
                until: at(30),
                failures: 5,
            },
            UserEvent::Unlocked,
            password_rehashed(),
            UserEvent::Erased { erased_at: at(40) },
        ]
    }

    fn password_rehashed() -> UserEvent {
        UserEvent::PasswordRehashed {
            password_hash: PasswordHash::new("$argon2id$rehashed".into()),
        }
    }

    #[test]
    fn every_event_has_a_summary_without_secrets() {
        let summaries: Vec<String> = all_events().iter().map(UserEvent::summary).collect();
        assert_eq!(
            summaries,
            [
                "registered as alice@example.com (Alice)",
                "email changed to bob@example.com (was alice@example.com)",
                "display name changed to Bob",
                "password changed",
                "deactivated",
                "reactivated",
                "role 00000000-0000-0000-0000-000000000007 assigned",
                "role 00000000-0000-0000-0000-000000000007 unassigned",
                "login failed from 203.0.113.7",
                "locked until 2024-05-01T12:00:30+00:00 after 5 failed logins",
                "unlocked",
                "password rehashed with newer parameters",
                "personal data erased",
            ]
        );
        assert_eq!(summaries.len(), UserEvent::EVENT_TYPES.len());
        assert!(summaries.iter().all(|s| !s.contains("argon2")));
    }

    #[test]
    fn every_event_round_trips_through_json() {
        for event in all_events() {
            let json = serde_json::to_string(&event).unwrap();
            let back: UserEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn payload_is_externally_tagged_with_plain_string_values() {
        let value = serde_json::to_value(registered()).unwrap();
        assert_eq!(
            value,
            json!({"Registered": {
                "user_id": "00000000-0000-0000-0000-000000000000",
                "email": "alice@example.com",
                "display_name": "Alice",
                "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            }})
        );
        assert_eq!(
            serde_json::to_value(UserEvent::Deactivated).unwrap(),
            json!("Deactivated")
        );
    }

    #[test]
    fn new_payloads_are_externally_tagged() {
        assert_eq!(
            serde_json::to_value(UserEvent::LoginFailed {
                ip: None,
                failed_at: at(1),
            })
            .unwrap(),
            json!({"LoginFailed": {"ip": null, "failed_at": "2024-05-01T12:00:01Z"}})
        );
        assert_eq!(
            serde_json::to_value(UserEvent::Locked {
                until: at(30),
                failures: 5,
            })
            .unwrap(),
            json!({"Locked": {"until": "2024-05-01T12:00:30Z", "failures": 5}})
        );
        assert_eq!(
            serde_json::to_value(UserEvent::Unlocked).unwrap(),
            json!("Unlocked")
        );
    }

    #[test]
    fn deserializing_an_invalid_email_fails() {
        let payload = json!({"EmailChanged": {
            "email": "not-an-email",
            "previous_email": "alice@example.com",
        }});
        assert!(serde_json::from_value::<UserEvent>(payload).is_err());
    }

    #[test]
    fn deserializing_an_invalid_display_name_fails() {
        let payload = json!({"DisplayNameChanged": {"display_name": "   "}});
        assert!(serde_json::from_value::<UserEvent>(payload).is_err());
    }

    #[test]
    fn event_types_are_stable_dotted_names() {
        let types: Vec<String> = all_events().iter().map(DomainEvent::event_type).collect();
        let names: Vec<&str> = UserEvent::EVENT_TYPES.iter().map(|t| t.name()).collect();
        assert_eq!(types, names);
        assert!(all_events().iter().all(|e| e.event_version() == "1"));
    }

    #[test]
    fn redact_secrets_replaces_password_hashes() {
        let mut events = all_events();
        events.iter_mut().for_each(UserEvent::redact_secrets);
        let UserEvent::Registered { password_hash, .. } = &events[0] else {
            panic!("expected Registered");
        };
        assert!(password_hash.is_redacted());
        let UserEvent::PasswordChanged { password_hash } = &events[3] else {
            panic!("expected PasswordChanged");
        };
        assert!(password_hash.is_redacted());
    }

    #[test]
    fn redact_secrets_replaces_a_rehashed_password() {
        let mut event = password_rehashed();
        event.redact_secrets();
        assert_eq!(
            event,
            UserEvent::PasswordRehashed {
                password_hash: PasswordHash::redacted()
            }
        );
    }

    #[test]
    fn redact_secrets_leaves_other_events_unchanged() {
        let originals = all_events();
        for original in originals.into_iter().filter(|e| {
            !matches!(
                e,
                UserEvent::Registered { .. }
                    | UserEvent::PasswordChanged { .. }
                    | UserEvent::PasswordRehashed { .. }
            )
        }) {
            let mut redacted = original.clone();
            redacted.redact_secrets();
            assert_eq!(redacted, original);
        }
    }

    #[test]
    fn redacted_hash_is_not_in_serialized_event() {
        let mut event = registered();
        event.redact_secrets();
        let json = serde_json::to_string(&event).unwrap();
        assert!(!json.contains("argon2"));
        assert!(json.contains("[redacted]"));
    }
}
