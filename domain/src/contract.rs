//! The event contract: every event type's name, version and serialized
//! shape is defined here and only here. Routing keys, consumer bindings,
//! SQL that reads a payload field and every reader of stored events take
//! their names from this module, and stored events become domain events in
//! [`decode`], where upcasters for older versions are applied.

use std::fmt;

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde::de::DeserializeOwned;

use crate::{
    AuditSignerEvent, RoleEvent, SecondFactorEvent, ServiceAccountEvent, SessionEvent, UserEvent,
    WebhookEvent,
};

/// One kind of event: its dotted name (`<aggregate>.<event>`, also the
/// routing key), the enum variant that carries it (the external tag of its
/// JSON payload) and the version written today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType {
    name: &'static str,
    variant: &'static str,
    version: &'static str,
}

/// The version every event type is written with today.
pub const CURRENT_VERSION: &str = "1";

impl EventType {
    pub(crate) const fn new(name: &'static str, variant: &'static str) -> Self {
        Self {
            name,
            variant,
            version: CURRENT_VERSION,
        }
    }

    /// Dotted name, e.g. `user.registered`.
    pub const fn name(self) -> &'static str {
        self.name
    }

    /// The enum variant, e.g. `Registered`: the payload's outer JSON key.
    pub const fn variant(self) -> &'static str {
        self.variant
    }

    /// The `event_version` written today.
    pub const fn version(self) -> &'static str {
        self.version
    }

    /// The routing key on the events exchange: the dotted name.
    pub const fn routing_key(self) -> &'static str {
        self.name
    }

    /// The aggregate type the event belongs to, e.g. `user`.
    pub fn aggregate_type(self) -> &'static str {
        self.name
            .split_once('.')
            .map_or(self.name, |(kind, _)| kind)
    }

    /// The event type named `name`, if the contract has one.
    pub fn by_name(name: &str) -> Option<Self> {
        all_event_types().find(|event_type| event_type.name == name)
    }

    /// A field of this event's payload, for SQL that must read it.
    pub const fn field(self, field: &'static str) -> PayloadField {
        PayloadField {
            event_type: self,
            field,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Every event type of every aggregate, in a stable order.
pub fn all_event_types() -> impl Iterator<Item = EventType> {
    UserEvent::EVENT_TYPES
        .iter()
        .chain(RoleEvent::EVENT_TYPES)
        .chain(SessionEvent::EVENT_TYPES)
        .chain(WebhookEvent::EVENT_TYPES)
        .chain(AuditSignerEvent::EVENT_TYPES)
        .chain(ServiceAccountEvent::EVENT_TYPES)
        .chain(SecondFactorEvent::EVENT_TYPES)
        .copied()
}

/// Every aggregate type of the contract, once each, in the same order.
pub fn aggregate_types() -> Vec<&'static str> {
    let mut types: Vec<&'static str> = Vec::new();
    for event_type in all_event_types() {
        if !types.contains(&event_type.aggregate_type()) {
            types.push(event_type.aggregate_type());
        }
    }
    types
}

/// A top-level field of one event type's payload. SQL reads it with
/// [`PayloadField::json_text`]; the domain's tests check the path exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PayloadField {
    pub event_type: EventType,
    pub field: &'static str,
}

impl PayloadField {
    /// `payload -> 'Variant' ->> 'field'`: the field as text, for SQL. The
    /// names are compile-time constants, never input.
    pub fn json_text(self) -> String {
        format!(
            "payload -> '{}' ->> '{}'",
            self.event_type.variant, self.field
        )
    }

    /// `{Variant, field}`: the field's path in the payload, for SQL that
    /// binds it as a `text[]` parameter (`#>`, `jsonb_set`).
    pub fn path(self) -> [&'static str; 2] {
        [self.event_type.variant, self.field]
    }
}

/// Every payload field that SQL reads (triggers, indexes, queries).
pub const PAYLOAD_FIELDS_READ_BY_SQL: &[PayloadField] = &[
    UserEvent::REGISTERED_EMAIL,
    UserEvent::EMAIL_CHANGED_EMAIL,
    RoleEvent::CREATED_NAME,
    RoleEvent::CREATED_PERMISSIONS,
    RoleEvent::PERMISSIONS_CHANGED_PERMISSIONS,
    UserEvent::ROLE_ASSIGNED_ROLE_ID,
    UserEvent::ROLE_UNASSIGNED_ROLE_ID,
    SessionEvent::STARTED_USER_ID,
    SessionEvent::STARTED_EXPIRES_AT,
    SessionEvent::STARTED_STARTED_AT,
    SessionEvent::STARTED_IDLE_TIMEOUT_SECONDS,
    SessionEvent::REFRESHED_REFRESHED_AT,
    SessionEvent::STARTED_REFRESH_TOKEN_HASH,
    SessionEvent::REFRESHED_REFRESH_TOKEN_HASH,
    ServiceAccountEvent::CREATED_NAME,
    ServiceAccountEvent::CREATED_DESCRIPTION,
    ServiceAccountEvent::NAME_CHANGED_NAME,
    ServiceAccountEvent::DESCRIPTION_CHANGED_DESCRIPTION,
    ServiceAccountEvent::ROLE_ASSIGNED_ROLE_ID,
    ServiceAccountEvent::ROLE_UNASSIGNED_ROLE_ID,
    ServiceAccountEvent::KEY_ISSUED_KEY_ID,
    ServiceAccountEvent::KEY_ISSUED_DESCRIPTION,
    ServiceAccountEvent::KEY_ISSUED_SCOPE,
    ServiceAccountEvent::KEY_ISSUED_EXPIRES_AT,
    ServiceAccountEvent::KEY_ISSUED_SECRET_HASH,
    ServiceAccountEvent::KEY_ROTATED_KEY_ID,
    ServiceAccountEvent::KEY_ROTATED_REPLACED_BY,
    ServiceAccountEvent::KEY_ROTATED_VALID_UNTIL,
    ServiceAccountEvent::KEY_REVOKED_KEY_ID,
    SecondFactorEvent::TOTP_ENABLED_FACTOR_ID,
    SecondFactorEvent::TOTP_REMOVED_FACTOR_ID,
    SecondFactorEvent::RECOVERY_CODES_GENERATED_CODE_HASHES,
    SecondFactorEvent::RECOVERY_CODE_USED_CODE_HASH,
    SecondFactorEvent::PASSKEY_REGISTERED_FACTOR_ID,
    SecondFactorEvent::PASSKEY_REMOVED_FACTOR_ID,
    SecondFactorEvent::VERIFIED_SESSION_ID,
    SecondFactorEvent::VERIFIED_METHOD,
];

/// A value unique across aggregates (an email across users), claimed in
/// `unique_claims` before the command that uses it and confirmed, by a
/// trigger, in the transaction that appends the event carrying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClaimScope(&'static str);

impl ClaimScope {
    pub const USER_EMAIL: Self = Self("user.email");
    pub const ROLE_NAME: Self = Self("role.name");

    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

/// An event of the contract whose payload type can be decoded from a stored row.
pub trait ContractEvent: DeserializeOwned {
    /// The aggregate type whose streams hold these events.
    const AGGREGATE_TYPE: &'static str;
}

impl ContractEvent for UserEvent {
    const AGGREGATE_TYPE: &'static str = <crate::User as cqrs_es::Aggregate>::TYPE;
}

impl ContractEvent for RoleEvent {
    const AGGREGATE_TYPE: &'static str = <crate::Role as cqrs_es::Aggregate>::TYPE;
}

impl ContractEvent for SessionEvent {
    const AGGREGATE_TYPE: &'static str = <crate::Session as cqrs_es::Aggregate>::TYPE;
}

impl ContractEvent for WebhookEvent {
    const AGGREGATE_TYPE: &'static str = <crate::Webhook as cqrs_es::Aggregate>::TYPE;
}

impl ContractEvent for AuditSignerEvent {
    const AGGREGATE_TYPE: &'static str = <crate::AuditSigner as cqrs_es::Aggregate>::TYPE;
}

impl ContractEvent for SecondFactorEvent {
    const AGGREGATE_TYPE: &'static str = <crate::SecondFactors as cqrs_es::Aggregate>::TYPE;
}

impl ContractEvent for ServiceAccountEvent {
    const AGGREGATE_TYPE: &'static str = <crate::ServiceAccount as cqrs_es::Aggregate>::TYPE;
}

/// A stored event that does not become a domain event. Permanent: retrying
/// the same bytes gives the same answer.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event type {0:?} is not in the event contract")]
    UnknownType(String),
    #[error("event type {event_type} belongs to aggregate type {expected}, not {found}")]
    WrongAggregate {
        event_type: EventType,
        expected: &'static str,
        found: String,
    },
    #[error("{event_type} version {version:?} has no upcaster to version {current}", current = .event_type.version())]
    UnknownVersion {
        event_type: EventType,
        version: String,
    },
    #[error("{event_type} payload does not decode")]
    Payload {
        event_type: EventType,
        #[source]
        source: serde_json::Error,
    },
}

/// The upcasters the event store applies when loading streams, oldest
/// version first. Each turns one `(event_type, version)` into the next.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
}

/// A stored event (type, version, payload) as the domain event it is,
/// after upcasting it to the current version with `upcasters`. This is the
/// one place stored rows become domain events outside postgres-es's own
/// loading, which is given the same [`upcasters`].
pub fn decode<E: ContractEvent>(
    event_type: &str,
    event_version: &str,
    payload: serde_json::Value,
) -> Result<E, DecodeError> {
    decode_with(&upcasters(), event_type, event_version, payload)
}

/// [`decode`] with an explicit list of upcasters.
pub fn decode_with<E: ContractEvent>(
    upcasters: &[Box<dyn EventUpcaster>],
    event_type: &str,
    event_version: &str,
    payload: serde_json::Value,
) -> Result<E, DecodeError> {
    let known = EventType::by_name(event_type)
        .ok_or_else(|| DecodeError::UnknownType(event_type.into()))?;
    if known.aggregate_type() != E::AGGREGATE_TYPE {
        return Err(DecodeError::WrongAggregate {
            event_type: known,
            expected: known.aggregate_type(),
            found: E::AGGREGATE_TYPE.into(),
        });
    }
    let stored = SerializedEvent::new(
        String::new(),
        0,
        E::AGGREGATE_TYPE.into(),
        event_type.into(),
        event_version.into(),
        payload,
        serde_json::Value::Null,
    );
    let current = upcasters.iter().fold(stored, |event, upcaster| {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            upcaster.upcast(event)
        } else {
            event
        }
    });
    if current.event_version != known.version() {
        return Err(DecodeError::UnknownVersion {
            event_type: known,
            version: current.event_version,
        });
    }
    serde_json::from_value(current.payload).map_err(|source| DecodeError::Payload {
        event_type: known,
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use cqrs_es::DomainEvent;
    use serde_json::json;

    use super::*;
    use crate::user::test_events as user_events;

    /// One serialized sample of every event type, with its contract entry.
    fn samples() -> Vec<(EventType, serde_json::Value)> {
        fn sample<E: serde::Serialize>(
            events: Vec<E>,
            contract_type: fn(&E) -> EventType,
        ) -> impl Iterator<Item = (EventType, serde_json::Value)> {
            events
                .into_iter()
                .map(move |e| (contract_type(&e), serde_json::to_value(&e).unwrap()))
        }
        sample(user_events(), UserEvent::contract_type)
            .chain(sample(crate::role::test_events(), RoleEvent::contract_type))
            .chain(sample(
                crate::session::test_events(),
                SessionEvent::contract_type,
            ))
            .chain(sample(
                crate::webhook::test_events(),
                WebhookEvent::contract_type,
            ))
            .chain(sample(
                crate::audit_signer::test_events(),
                AuditSignerEvent::contract_type,
            ))
            .chain(sample(
                crate::service_account::test_events(),
                ServiceAccountEvent::contract_type,
            ))
            .chain(sample(
                crate::second_factor::test_events(),
                SecondFactorEvent::contract_type,
            ))
            .collect()
    }

    #[test]
    fn every_name_is_unique_dotted_and_prefixed_by_its_aggregate() {
        let names: HashSet<&str> = all_event_types().map(EventType::name).collect();
        assert_eq!(names.len(), all_event_types().count());
        for event_type in all_event_types() {
            let (kind, event) = event_type.name().split_once('.').unwrap();
            assert!(!kind.is_empty(), "{event_type}");
            assert!(
                event.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{event_type}"
            );
            assert_eq!(event_type.routing_key(), event_type.name());
        }
    }

    #[test]
    fn every_type_is_prefixed_by_the_aggregate_type_of_its_enum() {
        let all = [
            (UserEvent::AGGREGATE_TYPE, UserEvent::EVENT_TYPES),
            (RoleEvent::AGGREGATE_TYPE, RoleEvent::EVENT_TYPES),
            (SessionEvent::AGGREGATE_TYPE, SessionEvent::EVENT_TYPES),
            (WebhookEvent::AGGREGATE_TYPE, WebhookEvent::EVENT_TYPES),
            (
                ServiceAccountEvent::AGGREGATE_TYPE,
                ServiceAccountEvent::EVENT_TYPES,
            ),
            (
                SecondFactorEvent::AGGREGATE_TYPE,
                SecondFactorEvent::EVENT_TYPES,
            ),
        ];
        for (aggregate_type, event_types) in all {
            for event_type in event_types {
                assert_eq!(event_type.aggregate_type(), aggregate_type);
            }
        }
    }

    #[test]
    fn by_name_finds_every_type_and_nothing_else() {
        for event_type in all_event_types() {
            assert_eq!(EventType::by_name(event_type.name()), Some(event_type));
        }
        assert_eq!(EventType::by_name("user.exploded"), None);
    }

    #[test]
    fn decode_returns_the_event_that_was_stored() {
        for event in user_events() {
            let payload = serde_json::to_value(&event).unwrap();
            let decoded: UserEvent =
                decode(&event.event_type(), &event.event_version(), payload).unwrap();
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn decode_refuses_an_unknown_type_a_foreign_type_and_a_bad_payload() {
        let unknown = decode::<UserEvent>("user.exploded", "1", json!("Deactivated"));
        assert!(matches!(unknown, Err(DecodeError::UnknownType(_))));
        let foreign = decode::<UserEvent>("role.deleted", "1", json!({"Deleted": {"name": "x"}}));
        assert!(matches!(foreign, Err(DecodeError::WrongAggregate { .. })));
        let bad = decode::<UserEvent>("user.deactivated", "1", json!({"Nope": {}}));
        assert!(matches!(bad, Err(DecodeError::Payload { .. })));
    }

    #[test]
    fn decode_refuses_a_version_no_upcaster_knows() {
        let future = decode::<UserEvent>("user.deactivated", "7", json!("Deactivated"));
        assert!(matches!(
            future,
            Err(DecodeError::UnknownVersion { version, .. }) if version == "7"
        ));
    }

    /// `user.display_name_changed` version 0 carried `{"name": ...}`.
    struct DisplayNameV0;

    impl EventUpcaster for DisplayNameV0 {
        fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
            event_type == UserEvent::DISPLAY_NAME_CHANGED.name() && event_version == "0"
        }

        fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
            let name = event.payload["DisplayNameChanged"]["name"].take();
            event.payload = json!({"DisplayNameChanged": {"display_name": name}});
            event.event_version = UserEvent::DISPLAY_NAME_CHANGED.version().into();
            event
        }
    }

    #[test]
    fn an_older_version_is_upcast_before_it_is_decoded() {
        let upcasters: Vec<Box<dyn EventUpcaster>> = vec![Box::new(DisplayNameV0)];
        let stored = json!({"DisplayNameChanged": {"name": "Ada"}});
        let decoded: UserEvent =
            decode_with(&upcasters, "user.display_name_changed", "0", stored.clone()).unwrap();
        assert_eq!(
            decoded,
            UserEvent::DisplayNameChanged {
                display_name: crate::DisplayName::parse("Ada").unwrap()
            }
        );
        assert!(matches!(
            decode::<UserEvent>("user.display_name_changed", "0", stored),
            Err(DecodeError::UnknownVersion { .. })
        ));
    }

    #[test]
    fn every_field_read_by_sql_is_in_its_event_payload() {
        let samples = samples();
        for field in PAYLOAD_FIELDS_READ_BY_SQL {
            let variant = field.event_type.variant();
            let found = samples
                .iter()
                .filter_map(|(_, sample)| sample.get(variant))
                .any(|body| body.get(field.field).is_some());
            assert!(found, "{} has no field {}", field.event_type, field.field);
        }
    }

    #[test]
    fn every_variant_is_the_external_tag_of_its_payload() {
        let samples = samples();
        let mut seen = HashSet::new();
        for (event_type, payload) in samples {
            let tag = match &payload {
                serde_json::Value::String(tag) => tag.clone(),
                serde_json::Value::Object(body) => body.keys().next().unwrap().clone(),
                other => panic!("{event_type}: {other}"),
            };
            assert_eq!(tag, event_type.variant(), "{event_type}");
            seen.insert(event_type);
        }
        assert_eq!(
            seen.len(),
            all_event_types().count(),
            "a type has no sample"
        );
    }

    #[test]
    fn path_names_the_variant_and_field() {
        assert_eq!(SessionEvent::STARTED_USER_ID.path(), ["Started", "user_id"]);
    }

    #[test]
    fn json_text_names_the_variant_and_field() {
        assert_eq!(
            SessionEvent::STARTED_USER_ID.json_text(),
            "payload -> 'Started' ->> 'user_id'"
        );
    }
}
