//! Redaction of stored events before they leave the service.

use cqrs_es::Aggregate;
use serde::Serialize;
use serde_json::Value;

use crate::audit_signer::{AuditSigner, AuditSignerEvent};
use crate::contract::{decode, ContractEvent, DecodeError, EventType};
use crate::role::{Role, RoleEvent};
use crate::second_factor::{SecondFactorEvent, SecondFactors};
use crate::service_account::{ServiceAccount, ServiceAccountEvent};
use crate::session::{Session, SessionEvent};
use crate::user::{User, UserEvent};
use crate::webhook::{Webhook, WebhookEvent};

/// Why a stored event could not be redacted; its payload is then untouched.
#[derive(Debug, thiserror::Error)]
pub enum RedactionError {
    #[error("the event does not decode")]
    Decode(#[from] DecodeError),
    #[error("the redacted event does not encode")]
    Encode(#[from] serde_json::Error),
}

/// What a secret reads as wherever it is not kept: on the broker, in
/// audit answers and exports.
pub const REDACTED: &str = "[redacted]";

/// The payload fields `redact_secrets` replaces with [`REDACTED`]: password
/// and refresh-token hashes. An export's verifier accepts a redacted leaf
/// only at these paths (a test keeps the list equal to what is redacted).
pub const SECRET_PAYLOAD_FIELDS: &[crate::contract::PayloadField] = &[
    UserEvent::REGISTERED_PASSWORD_HASH,
    UserEvent::PASSWORD_CHANGED_PASSWORD_HASH,
    UserEvent::PASSWORD_REHASHED_PASSWORD_HASH,
    SessionEvent::STARTED_REFRESH_TOKEN_HASH,
    SessionEvent::REFRESHED_REFRESH_TOKEN_HASH,
    ServiceAccountEvent::KEY_ISSUED_SECRET_HASH,
    SecondFactorEvent::RECOVERY_CODES_GENERATED_CODE_HASHES,
    SecondFactorEvent::RECOVERY_CODE_USED_CODE_HASH,
];

/// Replaces the secrets of a stored event of the aggregate named
/// `aggregate_type` (an [`Aggregate::TYPE`]) by calling its event's
/// `redact_secrets`. The event is read through the contract's [`decode`],
/// so an older version is upcast first and the payload written back is the
/// current version's: the version returned.
///
/// Returns `Ok(None)` for an unknown aggregate type (the payload is left
/// untouched), and an error when the payload is not such an event (the
/// payload is then left untouched too).
pub fn redact_event_payload(
    aggregate_type: &str,
    event_type: &str,
    event_version: &str,
    payload: &mut Value,
) -> Result<Option<&'static str>, RedactionError> {
    let stored = (event_type, event_version);
    match aggregate_type {
        User::TYPE => redact(stored, payload, UserEvent::redact_secrets).map(Some),
        Role::TYPE => redact(stored, payload, RoleEvent::redact_secrets).map(Some),
        Session::TYPE => redact(stored, payload, SessionEvent::redact_secrets).map(Some),
        Webhook::TYPE => redact(stored, payload, WebhookEvent::redact_secrets).map(Some),
        AuditSigner::TYPE => redact(stored, payload, AuditSignerEvent::redact_secrets).map(Some),
        ServiceAccount::TYPE => {
            redact(stored, payload, ServiceAccountEvent::redact_secrets).map(Some)
        }
        SecondFactors::TYPE => redact(stored, payload, SecondFactorEvent::redact_secrets).map(Some),
        _ => Ok(None),
    }
}

fn redact<E: ContractEvent + Serialize>(
    (event_type, event_version): (&str, &str),
    payload: &mut Value,
    redact_secrets: fn(&mut E),
) -> Result<&'static str, RedactionError> {
    let mut event: E = decode(event_type, event_version, payload.clone())?;
    redact_secrets(&mut event);
    *payload = serde_json::to_value(event)?;
    let current =
        EventType::by_name(event_type).map_or(crate::contract::CURRENT_VERSION, EventType::version);
    Ok(current)
}

#[cfg(test)]
mod tests {
    use cqrs_es::DomainEvent;
    use serde_json::json;

    use super::*;

    /// The `(variant, field)` leaves of `payload` that redaction changes.
    fn redacted_fields(aggregate_type: &str, event_type: &str, payload: &Value) -> Vec<String> {
        let mut redacted = payload.clone();
        redact_event_payload(aggregate_type, event_type, "1", &mut redacted).unwrap();
        let mut changed = Vec::new();
        for (variant, body) in payload.as_object().into_iter().flatten() {
            for (field, value) in body.as_object().into_iter().flatten() {
                if redacted[variant][field] != *value {
                    assert_eq!(redacted[variant][field], json!(REDACTED));
                    changed.push(format!("{variant}/{field}"));
                }
            }
        }
        changed
    }

    fn listed_fields(event_type: &str) -> Vec<String> {
        SECRET_PAYLOAD_FIELDS
            .iter()
            .filter(|field| field.event_type.name() == event_type)
            .map(|field| format!("{}/{}", field.event_type.variant(), field.field))
            .collect()
    }

    fn check_listed<E: DomainEvent + Serialize>(aggregate_type: &str, events: Vec<E>) {
        for event in events {
            let payload = serde_json::to_value(&event).unwrap();
            let event_type = event.event_type();
            assert_eq!(
                redacted_fields(aggregate_type, &event_type, &payload),
                listed_fields(&event_type),
                "{event_type}"
            );
        }
    }

    #[test]
    fn the_secret_fields_listed_are_exactly_those_redacted() {
        check_listed(User::TYPE, crate::user::test_events());
        check_listed(Session::TYPE, crate::session::test_events());
        check_listed(Role::TYPE, crate::role::test_events());
        check_listed(Webhook::TYPE, crate::webhook::test_events());
        check_listed(AuditSigner::TYPE, crate::audit_signer::test_events());
        check_listed(ServiceAccount::TYPE, crate::service_account::test_events());
        check_listed(SecondFactors::TYPE, crate::second_factor::test_events());
    }

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn user_password_hashes_are_redacted() {
        let mut payload = json!({"PasswordRehashed": {"password_hash": "$argon2id$secret"}});
        assert!(redact_event_payload(
            "user",
            UserEvent::PASSWORD_REHASHED.name(),
            "1",
            &mut payload
        )
        .unwrap()
        .is_some());
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
        assert!(
            redact_event_payload("session", SessionEvent::REFRESHED.name(), "1", &mut payload)
                .unwrap()
                .is_some()
        );
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
        assert!(redact_event_payload(
            "role",
            RoleEvent::PERMISSIONS_CHANGED.name(),
            "1",
            &mut payload
        )
        .unwrap()
        .is_some());
        assert_eq!(payload, original);
    }

    #[test]
    fn events_without_secrets_are_unchanged() {
        let original = json!({"Revoked": {
            "reason": "logged_out",
            "revoked_at": "2024-05-01T12:00:00Z",
        }});
        let mut payload = original.clone();
        assert!(
            redact_event_payload("session", SessionEvent::REVOKED.name(), "1", &mut payload)
                .unwrap()
                .is_some()
        );
        assert_eq!(payload, original);
    }

    #[test]
    fn unknown_aggregate_types_are_left_untouched() {
        let original = json!({"Anything": {"password_hash": "secret"}});
        let mut payload = original.clone();
        let untouched = redact_event_payload("invoice", "invoice.paid", "1", &mut payload).unwrap();
        assert!(untouched.is_none());
        assert_eq!(payload, original);
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_an_error_and_left_untouched() {
        let original = json!({"Refreshed": {"refresh_token_hash": DIGEST}});
        let mut payload = original.clone();
        let refreshed = SessionEvent::REFRESHED.name();
        assert!(redact_event_payload("user", refreshed, "1", &mut payload).is_err());
        assert!(redact_event_payload("session", refreshed, "1", &mut payload).is_err());
        assert_eq!(payload, original);
    }

    #[test]
    fn an_event_of_a_version_no_upcaster_knows_is_refused_and_left_untouched() {
        // Read through the contract: never published half-understood.
        let original = json!({"PasswordChanged": {"password_hash": "$argon2id$secret"}});
        let mut payload = original.clone();
        let changed = UserEvent::PASSWORD_CHANGED.name();
        let refused = redact_event_payload("user", changed, "0", &mut payload);
        assert!(matches!(
            refused,
            Err(RedactionError::Decode(DecodeError::UnknownVersion { .. }))
        ));
        assert_eq!(payload, original);
    }
}
