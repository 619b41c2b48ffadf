//! The events the lockout consumer handles, decoded as the domain defines
//! them.

use bus::Envelope;
use domain::{DecodeError, EventType, SessionEvent, UserEvent};
use uuid::Uuid;

use super::policy::Consumed;

/// The event types the lockout consumer handles: its queue's bindings, and
/// the events it decodes (any other is ignored).
pub const HANDLED: [EventType; 4] = [
    UserEvent::LOGIN_FAILED,
    UserEvent::LOCKED,
    SessionEvent::STARTED,
    UserEvent::ERASED,
];

/// An envelope of a handled type that is not the event it claims to be.
/// Permanent: the same bytes never decode.
#[derive(Debug, thiserror::Error)]
pub enum Undecodable {
    #[error("event {event_id} does not decode")]
    Payload {
        event_id: Uuid,
        #[source]
        source: DecodeError,
    },
    #[error("event {event_id}: aggregate id {aggregate_id:?} is not a user id")]
    UserId {
        event_id: Uuid,
        aggregate_id: String,
        #[source]
        source: uuid::Error,
    },
    #[error("event {event_id} of type {claimed} carries a {found} payload")]
    Mismatch {
        event_id: Uuid,
        claimed: EventType,
        found: EventType,
    },
}

/// The event, if the lockout consumer handles its type.
pub fn decode(envelope: &Envelope) -> Result<Option<Consumed>, Undecodable> {
    let Some(claimed) = HANDLED
        .into_iter()
        .find(|handled| handled.name() == envelope.event_type)
    else {
        return Ok(None);
    };
    let (found, consumed) = if claimed == SessionEvent::STARTED {
        session_event(payload(envelope)?)
    } else {
        user_event(envelope, payload(envelope)?)?
    };
    match consumed {
        Some(consumed) if found == claimed => Ok(Some(consumed)),
        _ => Err(Undecodable::Mismatch {
            event_id: envelope.event_id,
            claimed,
            found,
        }),
    }
}

fn payload<E: domain::ContractEvent>(envelope: &Envelope) -> Result<E, Undecodable> {
    infra::event_log::decode(envelope).map_err(|source| Undecodable::Payload {
        event_id: envelope.event_id,
        source,
    })
}

/// The event's type, and the event if it is a failed login or a lock.
fn user_event(
    envelope: &Envelope,
    event: UserEvent,
) -> Result<(EventType, Option<Consumed>), Undecodable> {
    let found = event.contract_type();
    let consumed = match event {
        UserEvent::LoginFailed { ip, failed_at } => Some(Consumed::LoginFailed {
            user_id: user_id(envelope)?,
            ip,
            failed_at,
        }),
        UserEvent::Locked { until, .. } => Some(Consumed::Locked {
            user_id: user_id(envelope)?,
            until,
            occurred_at: envelope.metadata.occurred_at,
            recorded_at: envelope.recorded_at,
        }),
        UserEvent::Erased { .. } => Some(Consumed::Erased {
            user_id: user_id(envelope)?,
        }),
        _ => None,
    };
    Ok((found, consumed))
}

/// The event's type, and the event if it is a session start.
fn session_event(event: SessionEvent) -> (EventType, Option<Consumed>) {
    let found = event.contract_type();
    let consumed = match event {
        SessionEvent::Started {
            user_id,
            started_at,
            ..
        } => Some(Consumed::SessionStarted {
            user_id,
            started_at,
        }),
        _ => None,
    };
    (found, consumed)
}

fn user_id(envelope: &Envelope) -> Result<Uuid, Undecodable> {
    Uuid::parse_str(&envelope.aggregate_id).map_err(|source| Undecodable::UserId {
        event_id: envelope.event_id,
        aggregate_id: envelope.aggregate_id.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use bus::EventMetadata;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use super::*;

    fn envelope(event_type: EventType, aggregate_id: &str, payload: serde_json::Value) -> Envelope {
        Envelope {
            event_id: Uuid::from_u128(1),
            global_position: 1,
            transaction_id: 1,
            aggregate_type: event_type.aggregate_type().into(),
            aggregate_id: aggregate_id.into(),
            sequence: 1,
            event_type: event_type.name().into(),
            event_version: event_type.version().into(),
            payload,
            metadata: EventMetadata::default(),
            recorded_at: Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap(),
        }
    }

    const USER: &str = "00000000-0000-0000-0000-000000000007";
    const FAILED_AT: &str = "2025-01-01T11:59:00Z";

    fn login_failed() -> serde_json::Value {
        json!({ UserEvent::LOGIN_FAILED.variant(): { "ip": "10.0.0.1", "failed_at": FAILED_AT } })
    }

    #[test]
    fn a_failed_login_becomes_what_the_policy_judges() {
        let decoded = decode(&envelope(UserEvent::LOGIN_FAILED, USER, login_failed())).unwrap();
        assert_eq!(
            decoded,
            Some(Consumed::LoginFailed {
                user_id: Uuid::parse_str(USER).unwrap(),
                ip: Some("10.0.0.1".into()),
                failed_at: FAILED_AT.parse().unwrap(),
            })
        );
    }

    #[test]
    fn other_event_types_are_not_handled() {
        let payload = json!(UserEvent::DEACTIVATED.variant());
        let other = envelope(UserEvent::DEACTIVATED, USER, payload);
        assert_eq!(decode(&other).unwrap(), None);
    }

    #[test]
    fn what_does_not_decode_says_why() {
        let bad_payload = envelope(UserEvent::LOGIN_FAILED, USER, json!({ "Bogus": {} }));
        assert!(matches!(
            decode(&bad_payload),
            Err(Undecodable::Payload { .. })
        ));
        let bad_id = envelope(UserEvent::LOGIN_FAILED, "not-a-uuid", login_failed());
        assert!(matches!(decode(&bad_id), Err(Undecodable::UserId { .. })));
        let mislabelled = envelope(UserEvent::LOCKED, USER, login_failed());
        assert!(matches!(
            decode(&mislabelled),
            Err(Undecodable::Mismatch { found, .. }) if found == UserEvent::LOGIN_FAILED
        ));
    }

    #[test]
    fn an_erasure_becomes_what_the_policy_judges() {
        let payload = json!({ UserEvent::ERASED.variant(): { "erased_at": FAILED_AT } });
        let decoded = decode(&envelope(UserEvent::ERASED, USER, payload)).unwrap();
        assert_eq!(
            decoded,
            Some(Consumed::Erased {
                user_id: Uuid::parse_str(USER).unwrap()
            })
        );
    }
}
