use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::values::{DisplayName, Email, PasswordHash};

const REGISTERED: &str = "user.registered";
const EMAIL_CHANGED: &str = "user.email_changed";
const DISPLAY_NAME_CHANGED: &str = "user.display_name_changed";
const PASSWORD_CHANGED: &str = "user.password_changed";
const DEACTIVATED: &str = "user.deactivated";
const REACTIVATED: &str = "user.reactivated";
const ROLE_ASSIGNED: &str = "user.role_assigned";
const ROLE_UNASSIGNED: &str = "user.role_unassigned";
const LOGIN_FAILED: &str = "user.login_failed";
const LOCKED: &str = "user.locked";
const UNLOCKED: &str = "user.unlocked";
const PASSWORD_REHASHED: &str = "user.password_rehashed";

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
}

impl UserEvent {
    /// Every value [`DomainEvent::event_type`] can return.
    pub const EVENT_TYPES: &'static [&'static str] = &[
        REGISTERED,
        EMAIL_CHANGED,
        DISPLAY_NAME_CHANGED,
        PASSWORD_CHANGED,
        DEACTIVATED,
        REACTIVATED,
        ROLE_ASSIGNED,
        ROLE_UNASSIGNED,
        LOGIN_FAILED,
        LOCKED,
        UNLOCKED,
        PASSWORD_REHASHED,
    ];

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
            | Self::Unlocked => {}
        }
    }
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        let name = match self {
            Self::Registered { .. } => REGISTERED,
            Self::EmailChanged { .. } => EMAIL_CHANGED,
            Self::DisplayNameChanged { .. } => DISPLAY_NAME_CHANGED,
            Self::PasswordChanged { .. } => PASSWORD_CHANGED,
            Self::Deactivated => DEACTIVATED,
            Self::Reactivated => REACTIVATED,
            Self::RoleAssigned { .. } => ROLE_ASSIGNED,
            Self::RoleUnassigned { .. } => ROLE_UNASSIGNED,
            Self::LoginFailed { .. } => LOGIN_FAILED,
            Self::Locked { .. } => LOCKED,
            Self::Unlocked => UNLOCKED,
            Self::PasswordRehashed { .. } => PASSWORD_REHASHED,
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[cfg(test)]
mod tests {
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

    fn all_events() -> Vec<UserEvent> {
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
        ]
    }

    fn password_rehashed() -> UserEvent {
        UserEvent::PasswordRehashed {
            password_hash: PasswordHash::new("$argon2id$rehashed".into()),
        }
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
        assert_eq!(types, UserEvent::EVENT_TYPES);
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
