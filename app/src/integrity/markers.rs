//! Where a value may be shown as a marker without its salt. "[erased]"
//! only at a personal path of its event type (`domain::erasure`), in an
//! event a recorded `user.erased` covers: the erased user's stream, the
//! streams of the sessions they started, and (for the personal metadata)
//! the events they caused. "[redacted]" only at a secret path
//! (`domain::SECRET_PAYLOAD_FIELDS`), only in an export. Anything else is
//! `unexpected_erasure`.

use std::collections::{HashMap, HashSet};

use bus::metadata_keys::ACTOR_ID;
use cqrs_es::Aggregate;
use domain::{
    PayloadField, PersonalMetadata, Session, SessionEvent, User, UserEvent,
    PERSONAL_PAYLOAD_FIELDS, SECRET_PAYLOAD_FIELDS,
};
use infra::erased::metadata_key;
use infra::integrity::{Json, Marker, Withheld};

use super::check::SealedRecord;
use super::report::{Broken, Reason};

fn payload_path(field: &PayloadField) -> String {
    format!("/payload/{}/{}", field.event_type.variant(), field.field)
}

fn listed(fields: &[PayloadField], event_type: &str, path: &str) -> bool {
    fields
        .iter()
        .any(|field| field.event_type.name() == event_type && payload_path(field) == path)
}

fn personal_metadata(path: &str) -> bool {
    PersonalMetadata::ALL
        .iter()
        .any(|metadata| path == format!("/metadata/{}", metadata_key(*metadata)))
}

/// An erased value waiting for the erasure that allows it.
#[derive(Clone, Debug)]
pub struct ErasedValue {
    pub broken: Broken,
    /// The user whose stream (or whose session's stream) holds it, if the
    /// stream is a user's; a session's owner is looked up by its id.
    stream: (String, String),
    /// Personal metadata may also be erased because its actor was.
    actor_id: Option<String>,
    in_metadata: bool,
    /// Before hash version 2, erasures blanked every actor's metadata in
    /// the person's streams.
    hash_version: i16,
}

/// Checks each withheld leaf's path; returns the erased ones, which still
/// need a recorded erasure ([`Erasures::covers`]).
pub fn erased_values(
    record: &SealedRecord<'_>,
    withheld: Vec<Withheld>,
    in_export: bool,
) -> Result<Vec<ErasedValue>, Broken> {
    let mut erased = Vec::new();
    for leaf in withheld {
        let unexpected = || Broken {
            detail: Some(format!(
                "{}: shown {:?} without its salt",
                leaf.path, leaf.marker
            )),
            ..record.broken(Reason::UnexpectedErasure, None, None)
        };
        match leaf.marker {
            Marker::Redacted
                if in_export
                    && listed(SECRET_PAYLOAD_FIELDS, record.event.event_type, &leaf.path) => {}
            Marker::Redacted => return Err(unexpected()),
            Marker::Erased => {
                let in_metadata = personal_metadata(&leaf.path);
                if !in_metadata
                    && !listed(PERSONAL_PAYLOAD_FIELDS, record.event.event_type, &leaf.path)
                {
                    return Err(unexpected());
                }
                erased.push(ErasedValue {
                    broken: unexpected(),
                    stream: (
                        record.event.aggregate_type.to_owned(),
                        record.event.aggregate_id.to_owned(),
                    ),
                    actor_id: record
                        .visible
                        .get("metadata")
                        .and_then(|metadata| metadata.get(ACTOR_ID))
                        .and_then(Json::as_str)
                        .map(str::to_owned),
                    in_metadata,
                    hash_version: record.event.hash_version,
                });
            }
        }
    }
    Ok(erased)
}

/// The erasures on record: the users erased and who started each session.
#[derive(Debug, Default)]
pub struct Erasures {
    erased_users: HashSet<String>,
    session_owners: HashMap<String, String>,
}

impl Erasures {
    pub fn user_erased(&mut self, user_id: String) {
        self.erased_users.insert(user_id);
    }

    pub fn session_started(&mut self, session_id: String, user_id: String) {
        self.session_owners.insert(session_id, user_id);
    }

    /// Learns from an event as it passes (for an export read in one pass).
    pub fn learn(&mut self, record: &SealedRecord<'_>) {
        if record.event.aggregate_type == User::TYPE
            && record.event.event_type == UserEvent::ERASED.name()
        {
            self.user_erased(record.event.aggregate_id.to_owned());
        }
        if record.event.aggregate_type == Session::TYPE
            && record.event.event_type == SessionEvent::STARTED.name()
        {
            let field = SessionEvent::STARTED_USER_ID;
            let owner = record
                .visible
                .get("payload")
                .and_then(|payload| payload.get(field.event_type.variant()))
                .and_then(|variant| variant.get(field.field))
                .and_then(Json::as_str);
            if let Some(owner) = owner {
                self.session_started(record.event.aggregate_id.to_owned(), owner.to_owned());
            }
        }
    }

    fn stream_owner<'a>(
        &'a self,
        (aggregate_type, aggregate_id): &'a (String, String),
    ) -> Option<&'a String> {
        match aggregate_type.as_str() {
            User::TYPE => Some(aggregate_id),
            Session::TYPE => self.session_owners.get(aggregate_id),
            _ => None,
        }
    }

    /// Whether a recorded erasure allows `value`: a payload value is the
    /// stream owner's; personal metadata is the actor's, or the stream
    /// owner's when the service itself wrote the event (no actor) or it
    /// was hashed under version 1.
    pub fn covers(&self, value: &ErasedValue) -> bool {
        let erased = |user: Option<&String>| user.is_some_and(|u| self.erased_users.contains(u));
        let owner = || erased(self.stream_owner(&value.stream));
        if !value.in_metadata {
            return owner();
        }
        erased(value.actor_id.as_ref())
            || ((value.actor_id.is_none() || value.hash_version == 1) && owner())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use infra::event_log::LogPosition;
    use infra::integrity::HashedEventRef;
    use serde_json::{json, Value};

    use super::*;

    fn record<'a>(
        aggregate_type: &'a str,
        aggregate_id: &'a str,
        event_type: &'a str,
        visible: &'a Value,
    ) -> SealedRecord<'a> {
        SealedRecord {
            event: HashedEventRef {
                hash_version: 2,
                event_id: "",
                aggregate_type,
                aggregate_id,
                sequence: 1,
                event_type,
                event_version: "1",
                sealed: "",
                recorded_at: Utc::now(),
                prev_hash: "",
                hash: "",
            },
            position: LogPosition::default(),
            visible: Json::from_value(visible),
            salts: Json::Null,
        }
    }

    fn acted_by(actor: &str) -> Value {
        json!({"payload": {}, "metadata": {ACTOR_ID: actor}})
    }

    fn erased_at(path: &str) -> Vec<Withheld> {
        vec![Withheld {
            path: path.to_owned(),
            marker: Marker::Erased,
        }]
    }

    fn email_path() -> String {
        payload_path(&UserEvent::REGISTERED_EMAIL)
    }

    #[test]
    fn an_erased_email_in_an_erased_users_stream_is_allowed() {
        let visible = acted_by("u1");
        let given = record(User::TYPE, "u1", UserEvent::REGISTERED.name(), &visible);
        let mut erasures = Erasures::default();
        erasures.user_erased("u1".to_owned());
        let erased = erased_values(&given, erased_at(&email_path()), false).unwrap();
        assert!(erasures.covers(&erased[0]));
    }

    #[test]
    fn an_erased_email_of_a_user_never_erased_is_unexpected() {
        let visible = acted_by("u1");
        let given = record(User::TYPE, "u1", UserEvent::REGISTERED.name(), &visible);
        let erased = erased_values(&given, erased_at(&email_path()), false).unwrap();
        assert!(!Erasures::default().covers(&erased[0]));
    }

    #[test]
    fn erased_values_outside_the_personal_paths_are_unexpected() {
        let visible = acted_by("u1");
        let given = record(User::TYPE, "u1", UserEvent::ROLE_ASSIGNED.name(), &visible);
        for path in [
            "/payload/RoleAssigned/role_id".to_owned(),
            "/metadata/actor_id".to_owned(),
            email_path(),
        ] {
            let found = erased_values(&given, erased_at(&path), false).unwrap_err();
            assert_eq!(found.reason, Reason::UnexpectedErasure, "{path}");
        }
    }

    #[test]
    fn personal_metadata_is_allowed_erased_on_events_the_erased_user_caused() {
        let visible = acted_by("u1");
        let given = record(User::TYPE, "admin", UserEvent::DEACTIVATED.name(), &visible);
        let erased = erased_values(&given, erased_at("/metadata/request_ip"), false).unwrap();
        let mut erasures = Erasures::default();
        assert!(!erasures.covers(&erased[0]));
        erasures.user_erased("u1".to_owned());
        assert!(erasures.covers(&erased[0]));
    }

    #[test]
    fn another_actors_metadata_in_the_erased_persons_stream_is_not_erasable() {
        let visible = acted_by("admin");
        let given = record(User::TYPE, "u1", UserEvent::ERASED.name(), &visible);
        let erased = erased_values(&given, erased_at("/metadata/user_agent"), false).unwrap();
        let mut erasures = Erasures::default();
        erasures.user_erased("u1".to_owned());
        assert!(!erasures.covers(&erased[0]));
        let mut older = record(User::TYPE, "u1", UserEvent::ERASED.name(), &visible);
        older.event.hash_version = 1;
        let erased = erased_values(&older, erased_at("/metadata/user_agent"), false).unwrap();
        assert!(
            erasures.covers(&erased[0]),
            "erasures before version 2 did so"
        );
    }

    #[test]
    fn metadata_of_an_event_without_actor_is_the_stream_owners() {
        let visible = json!({"payload": {}, "metadata": {}});
        let given = record(User::TYPE, "u1", UserEvent::LOGIN_FAILED.name(), &visible);
        let erased = erased_values(&given, erased_at("/metadata/request_ip"), false).unwrap();
        let mut erasures = Erasures::default();
        erasures.user_erased("u1".to_owned());
        assert!(erasures.covers(&erased[0]));
    }

    #[test]
    fn a_sessions_values_are_covered_by_the_erasure_of_who_started_it() {
        let visible = acted_by("u1");
        let given = record(Session::TYPE, "s1", SessionEvent::STARTED.name(), &visible);
        let path = payload_path(&SessionEvent::STARTED_IP);
        let erased = erased_values(&given, erased_at(&path), false).unwrap();
        let mut erasures = Erasures::default();
        erasures.user_erased("u1".to_owned());
        assert!(!erasures.covers(&erased[0]), "whose session is unknown");
        erasures.session_started("s1".to_owned(), "u1".to_owned());
        assert!(erasures.covers(&erased[0]));
    }

    #[test]
    fn redacted_only_at_secret_paths_and_only_in_exports() {
        let visible = acted_by("u1");
        let given = record(User::TYPE, "u1", UserEvent::REGISTERED.name(), &visible);
        let secret = vec![Withheld {
            path: payload_path(&UserEvent::REGISTERED_PASSWORD_HASH),
            marker: Marker::Redacted,
        }];
        assert!(erased_values(&given, secret.clone(), true)
            .unwrap()
            .is_empty());
        assert!(erased_values(&given, secret, false).is_err());
        let not_secret = vec![Withheld {
            path: email_path(),
            marker: Marker::Redacted,
        }];
        assert!(erased_values(&given, not_secret, true).is_err());
    }
}
