//! Erasure of a person (`user.erased`): which values the service stores
//! are personal, and the marker that replaces each of them. Defined here
//! once; the application scrubs the event store by these paths, the read
//! models and the integrity verifier recognise the marker.
//!
//! Personal values live in the streams of the person (their user and their
//! sessions) and in the metadata of every event the person caused. The id,
//! the event types, the sequences and the times remain: the history still
//! shows *that* things happened.

use crate::contract::PayloadField;
use crate::{SessionEvent, UserEvent};

/// What an erased personal value reads as, in stored events (payload and
/// metadata), read models and everything derived from them. A leaf with
/// this value and no salt is an erased one (see the integrity migration).
pub const ERASED: &str = "[erased]";

/// Payload fields that hold a person's data: addresses, names, client
/// addresses and user agents, and password hashes (a hash lets anyone who
/// holds it test guesses of the person's password). Every string value at
/// these paths in the person's streams is replaced by [`ERASED`].
pub const PERSONAL_PAYLOAD_FIELDS: &[PayloadField] = &[
    UserEvent::REGISTERED_EMAIL,
    UserEvent::REGISTERED_DISPLAY_NAME,
    UserEvent::REGISTERED_PASSWORD_HASH,
    UserEvent::EMAIL_CHANGED_EMAIL,
    UserEvent::EMAIL_CHANGED_PREVIOUS_EMAIL,
    UserEvent::DISPLAY_NAME_CHANGED_DISPLAY_NAME,
    UserEvent::PASSWORD_CHANGED_PASSWORD_HASH,
    UserEvent::PASSWORD_REHASHED_PASSWORD_HASH,
    UserEvent::LOGIN_FAILED_IP,
    SessionEvent::STARTED_IP,
    SessionEvent::STARTED_USER_AGENT,
];

/// Metadata every event may carry that is personal: where a request came
/// from and what sent it. The key each is stored under is the envelope's
/// business (`bus::metadata_keys`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PersonalMetadata {
    RequestIp,
    UserAgent,
}

impl PersonalMetadata {
    pub const ALL: &'static [PersonalMetadata] = &[Self::RequestIp, Self::UserAgent];
}

#[cfg(test)]
mod tests {
    use cqrs_es::DomainEvent;
    use serde_json::Value;

    use super::*;
    use crate::contract::{decode, ContractEvent};
    use crate::{DisplayName, Email, Session, User};

    /// The personal values the sample events carry.
    const SAMPLE_PERSONAL: &[&str] = &[
        "alice@example.com",
        "bob@example.com",
        "Alice",
        "Bob",
        "203.0.113.7",
        "Mozilla/5.0 (Sample)",
        "argon2id",
    ];

    /// `payload` with every personal field that holds a string erased, as
    /// the application's SQL does it.
    fn erased(mut payload: Value) -> Value {
        for field in PERSONAL_PAYLOAD_FIELDS {
            let leaf = payload
                .get_mut(field.event_type.variant())
                .and_then(|body| body.get_mut(field.field));
            if let Some(leaf) = leaf.filter(|leaf| leaf.is_string()) {
                *leaf = Value::String(ERASED.into());
            }
        }
        payload
    }

    fn samples<E: ContractEvent + serde::Serialize + DomainEvent>(
        events: Vec<E>,
    ) -> Vec<(E, Value)> {
        events
            .into_iter()
            .map(|event| {
                let payload = serde_json::to_value(&event).unwrap();
                (event, payload)
            })
            .collect()
    }

    fn check_erasure_of<E>(events: Vec<E>)
    where
        E: ContractEvent + serde::Serialize + DomainEvent,
    {
        for (event, payload) in samples(events) {
            let scrubbed = erased(payload);
            let text = scrubbed.to_string();
            for personal in SAMPLE_PERSONAL {
                assert!(
                    !text.contains(personal),
                    "{} keeps {personal}: {text}",
                    event.event_type()
                );
            }
            let decoded: Result<E, _> =
                decode(&event.event_type(), &event.event_version(), scrubbed);
            assert!(
                decoded.is_ok(),
                "{} does not decode erased",
                event.event_type()
            );
        }
    }

    #[test]
    fn every_personal_value_of_every_event_type_is_covered_and_still_decodes() {
        check_erasure_of(crate::user::test_events());
        check_erasure_of(crate::session::test_events());
    }

    #[test]
    fn every_personal_field_is_in_its_event_payload() {
        let payloads: Vec<Value> = samples(crate::user::test_events())
            .into_iter()
            .map(|(_, payload)| payload)
            .chain(
                samples(crate::session::test_events())
                    .into_iter()
                    .map(|(_, payload)| payload),
            )
            .collect();
        for field in PERSONAL_PAYLOAD_FIELDS {
            let found = payloads
                .iter()
                .filter_map(|payload| payload.get(field.event_type.variant()))
                .any(|body| body.get(field.field).is_some());
            assert!(found, "{} has no field {}", field.event_type, field.field);
        }
    }

    #[test]
    fn given_an_erased_stream_when_it_is_loaded_then_it_reads_erased() {
        use cqrs_es::Aggregate;
        let mut user = User::default();
        for (event, payload) in samples(crate::user::test_events()) {
            let stored: UserEvent =
                decode(&event.event_type(), &event.event_version(), erased(payload)).unwrap();
            user.apply(stored);
        }
        assert_eq!(user.email().map(Email::as_str), Some(ERASED));
        assert_eq!(user.display_name().map(DisplayName::as_str), Some(ERASED));
        let mut session = Session::default();
        for (event, payload) in samples(crate::session::test_events()) {
            let stored: SessionEvent =
                decode(&event.event_type(), &event.event_version(), erased(payload)).unwrap();
            session.apply(stored);
        }
        assert_eq!(session.ip(), Some(ERASED));
        assert_eq!(session.user_agent(), Some(ERASED));
    }

    #[test]
    fn the_marker_is_an_erased_email_and_no_address_can_be_registered_as_it() {
        let email: Email = serde_json::from_value(Value::String(ERASED.into())).unwrap();
        assert!(email.is_erased());
        assert_eq!(email, Email::erased());
        assert_eq!(serde_json::to_value(&email).unwrap(), ERASED);
        assert!(Email::parse(ERASED).is_err());
        assert!(Email::parse_existing(ERASED).is_err());
        assert!(!Email::parse("a@example.com").unwrap().is_erased());
    }
}
