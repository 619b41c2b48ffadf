//! Redaction of stored event payloads before they leave the service.

use cqrs_es::Aggregate;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::role::{Role, RoleEvent};
use crate::session::{Session, SessionEvent};
use crate::user::{User, UserEvent};

/// Replaces the secrets in a serialized event of the aggregate named `aggregate_type`
/// (an [`Aggregate::TYPE`]) by calling its event's `redact_secrets`.
///
/// Returns `Ok(true)` when the payload was read and written back, `Ok(false)` for an
/// unknown aggregate type (the payload is left untouched), and an error when the
/// payload is not an event of that aggregate (the payload is then left untouched too).
pub fn redact_event_payload(
    aggregate_type: &str,
    payload: &mut Value,
) -> Result<bool, serde_json::Error> {
    match aggregate_type {
        User::TYPE => redact(payload, UserEvent::redact_secrets),
        Role::TYPE => redact(payload, RoleEvent::redact_secrets),
        Session::TYPE => redact(payload, SessionEvent::redact_secrets),
        _ => Ok(false),
    }
}

fn redact<E: Serialize + DeserializeOwned>(
    payload: &mut Value,
    redact_secrets: fn(&mut E),
) -> Result<bool, serde_json::Error> {
    let mut event = E::deserialize(&*payload)?;
    redact_secrets(&mut event);
    *payload = serde_json::to_value(event)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn user_password_hashes_are_redacted() {
        let mut payload = json!({"PasswordRehashed": {"password_hash": "$argon2id$secret"}});
        assert!(redact_event_payload("user", &mut payload).unwrap());
        assert_eq!(
            payload,
            json!({"PasswordRehashed": {"password_hash": "[redacted]"}})
        );
    }

    #[test]
    fn session_refresh_token_hashes_are_redacted() {
        let mut payload = json!({"Refreshed": {
            "refresh_token_hash": DIGEST,
            "refreshed_at": "2024-05-01T12:00:00Z",
        }});
        assert!(redact_event_payload("session", &mut payload).unwrap());
        assert_eq!(
            payload,
            json!({"Refreshed": {
                "refresh_token_hash": "[redacted]",
                "refreshed_at": "2024-05-01T12:00:00Z",
            }})
        );
    }

    #[test]
    fn role_payloads_are_read_and_kept() {
        let original = json!({"PermissionsChanged": {"permissions": ["users:read"]}});
        let mut payload = original.clone();
        assert!(redact_event_payload("role", &mut payload).unwrap());
        assert_eq!(payload, original);
    }

    #[test]
    fn events_without_secrets_are_unchanged() {
        let original = json!({"Revoked": {
            "reason": "logged_out",
            "revoked_at": "2024-05-01T12:00:00Z",
        }});
        let mut payload = original.clone();
        assert!(redact_event_payload("session", &mut payload).unwrap());
        assert_eq!(payload, original);
    }

    #[test]
    fn unknown_aggregate_types_are_left_untouched() {
        let original = json!({"Anything": {"password_hash": "secret"}});
        let mut payload = original.clone();
        assert!(!redact_event_payload("invoice", &mut payload).unwrap());
        assert_eq!(payload, original);
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_an_error_and_left_untouched() {
        let original = json!({"Refreshed": {"refresh_token_hash": DIGEST}});
        let mut payload = original.clone();
        assert!(redact_event_payload("user", &mut payload).is_err());
        assert!(redact_event_payload("session", &mut payload).is_err());
        assert_eq!(payload, original);
    }
}
