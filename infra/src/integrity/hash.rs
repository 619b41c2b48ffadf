//! An event's hash, chained to the previous event of its stream, and the
//! running hash that folds every event's hash in publishing order.

use chrono::{DateTime, Utc};

use super::{FieldHasher, HexDigest};
use crate::event_log::LogPosition;

const LOG_DOMAIN: &str = "identity-log/1";

/// Which fields an event's hash covers (`events.hash_version`). Events keep
/// the version they were hashed under; new ones get [`HashVersion::CURRENT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "i16", into = "i16")]
pub enum HashVersion {
    /// `identity-event/1`: every field but the event's id.
    V1,
    /// `identity-event/2`: the event's id too, right after `prev_hash`.
    V2,
}

impl HashVersion {
    pub const CURRENT: Self = Self::V2;

    fn domain(self) -> &'static str {
        match self {
            Self::V1 => "identity-event/1",
            Self::V2 => "identity-event/2",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("hash version {0} is not known")]
pub struct UnknownHashVersion(pub i16);

impl TryFrom<i16> for HashVersion {
    type Error = UnknownHashVersion;

    fn try_from(version: i16) -> Result<Self, Self::Error> {
        match version {
            1 => Ok(Self::V1),
            2 => Ok(Self::V2),
            other => Err(UnknownHashVersion(other)),
        }
    }
}

impl From<HashVersion> for i16 {
    fn from(version: HashVersion) -> Self {
        match version {
            HashVersion::V1 => 1,
            HashVersion::V2 => 2,
        }
    }
}

/// What an event's hash covers.
#[derive(Clone, Debug)]
pub struct ChainedEvent<'a> {
    pub version: HashVersion,
    /// The hash of the event before it in its stream; empty for the first.
    pub prev_hash: &'a str,
    /// Lowercase and hyphenated, as PostgreSQL writes a uuid; unused by V1.
    pub event_id: &'a str,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    /// `events.sealed` exactly as stored.
    pub sealed: &'a str,
    pub recorded_at: DateTime<Utc>,
}

pub fn event_hash(event: &ChainedEvent<'_>) -> String {
    event_digest(event).into()
}

/// [`event_hash`] without allocating.
pub fn event_digest(event: &ChainedEvent<'_>) -> HexDigest {
    let mut message = FieldHasher::new(event.version.domain());
    message.field(event.prev_hash);
    if event.version == HashVersion::V2 {
        message.field(event.event_id);
    }
    message.field(event.aggregate_type);
    message.field(event.aggregate_id);
    message.number(event.sequence);
    message.field(event.event_type);
    message.field(event.event_version);
    message.field(event.sealed);
    message.number(event.recorded_at.timestamp_micros());
    message.finish()
}

/// An event's fields as stored (or exported) that its hash covers, with
/// the hashes stored beside them: what every check of an event's hash and
/// link reads, whoever reads it (the signer, the verifiers).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct HashedEvent {
    /// `events.hash_version`: which fields `hash` covers.
    pub hash_version: i16,
    pub event_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// `events.sealed` exactly as stored.
    pub sealed: String,
    pub recorded_at: DateTime<Utc>,
    pub prev_hash: String,
    pub hash: String,
}

/// A [`HashedEvent`] borrowed from wherever it was read (a row, an
/// export line): what the verifiers check without copying its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashedEventRef<'a> {
    pub hash_version: i16,
    pub event_id: &'a str,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub sealed: &'a str,
    pub recorded_at: DateTime<Utc>,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

/// Why an event's stored hash is not the hash of its stored fields.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashDefect {
    #[error(transparent)]
    UnknownVersion(#[from] UnknownHashVersion),
    #[error("stored hash {stored}, its fields hash to {computed}")]
    Mismatch { stored: String, computed: String },
}

impl HashedEvent {
    pub fn as_ref(&self) -> HashedEventRef<'_> {
        HashedEventRef {
            hash_version: self.hash_version,
            event_id: &self.event_id,
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            sealed: &self.sealed,
            recorded_at: self.recorded_at,
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        }
    }

    /// The hash of its fields, under its version.
    pub fn recompute(&self) -> Result<String, UnknownHashVersion> {
        self.as_ref().recompute().map(String::from)
    }

    /// That the stored hash is the hash of the stored fields.
    pub fn check_hash(&self) -> Result<(), HashDefect> {
        self.as_ref().check_hash()
    }

    /// Whether it follows `previous` (the sequence and hash of the event
    /// before it in its stream) or, without one, begins its stream.
    pub fn follows(&self, previous: Option<(i64, &str)>) -> bool {
        self.as_ref().follows(previous)
    }
}

impl HashedEventRef<'_> {
    /// The hash of its fields, under its version.
    pub fn recompute(&self) -> Result<HexDigest, UnknownHashVersion> {
        Ok(event_digest(&ChainedEvent {
            version: HashVersion::try_from(self.hash_version)?,
            prev_hash: self.prev_hash,
            event_id: self.event_id,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version: self.event_version,
            sealed: self.sealed,
            recorded_at: self.recorded_at,
        }))
    }

    /// That the stored hash is the hash of the stored fields.
    pub fn check_hash(&self) -> Result<(), HashDefect> {
        let computed = self.recompute()?;
        if computed == *self.hash {
            Ok(())
        } else {
            Err(HashDefect::Mismatch {
                stored: self.hash.to_owned(),
                computed: computed.into(),
            })
        }
    }

    /// Whether it follows `previous` (the sequence and hash of the event
    /// before it in its stream) or, without one, begins its stream.
    pub fn follows(&self, previous: Option<(i64, &str)>) -> bool {
        let (sequence, prev_hash) =
            previous.map_or((1, ""), |(sequence, hash)| (sequence + 1, hash));
        self.sequence == sequence && self.prev_hash == prev_hash
    }
}

/// The running hash after folding in the event with `event_hash` at
/// `position`; `previous` is empty before the first event.
pub fn running_hash(previous: &str, event_hash: &str, position: LogPosition) -> String {
    running_digest(previous, event_hash, position).into()
}

/// [`running_hash`] without allocating.
pub fn running_digest(previous: &str, event_hash: &str, position: LogPosition) -> HexDigest {
    let mut message = FieldHasher::new(LOG_DOMAIN);
    message.field(previous);
    message.field(event_hash);
    message.number(position.transaction_id);
    message.number(position.global_position);
    message.finish()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use domain::UserEvent;

    use super::super::sha256_hex;
    use super::*;

    fn event() -> ChainedEvent<'static> {
        ChainedEvent {
            version: HashVersion::V1,
            prev_hash: "",
            event_id: "0190a0a0-0000-7000-8000-000000000001",
            aggregate_type: "user",
            aggregate_id: "u1",
            sequence: 1,
            event_type: UserEvent::REGISTERED.name(),
            event_version: "1",
            sealed: r#"{"payload": {}, "metadata": {}}"#,
            recorded_at: Utc.timestamp_micros(1_764_000_000_123_456).unwrap(),
        }
    }

    #[test]
    fn the_hash_is_sha256_of_the_length_prefixed_fields() {
        let name = UserEvent::REGISTERED.name();
        let message = format!(
            "identity-event/10:4:user2:u11:1{}:{name}1:1\
             31:{{\"payload\": {{}}, \"metadata\": {{}}}}16:1764000000123456",
            name.len()
        );
        assert_eq!(event_hash(&event()), sha256_hex(message.as_bytes()));
    }

    #[test]
    fn version_2_also_covers_the_event_id() {
        let name = UserEvent::REGISTERED.name();
        let v2 = ChainedEvent {
            version: HashVersion::V2,
            ..event()
        };
        let message = format!(
            "identity-event/20:36:0190a0a0-0000-7000-8000-000000000001\
             4:user2:u11:1{}:{name}1:1\
             31:{{\"payload\": {{}}, \"metadata\": {{}}}}16:1764000000123456",
            name.len()
        );
        assert_eq!(event_hash(&v2), sha256_hex(message.as_bytes()));
        let other_id = ChainedEvent {
            event_id: "0190a0a0-0000-7000-8000-000000000002",
            ..v2.clone()
        };
        assert_ne!(event_hash(&other_id), event_hash(&v2));
        assert_eq!(
            event_hash(&ChainedEvent {
                event_id: "anything",
                ..event()
            }),
            event_hash(&event()),
            "version 1 does not cover the id"
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let original = event_hash(&event());
        let changed: [ChainedEvent; 8] = [
            ChainedEvent {
                prev_hash: "00",
                ..event()
            },
            ChainedEvent {
                aggregate_type: "role",
                ..event()
            },
            ChainedEvent {
                aggregate_id: "u2",
                ..event()
            },
            ChainedEvent {
                sequence: 2,
                ..event()
            },
            ChainedEvent {
                event_type: UserEvent::DEACTIVATED.name(),
                ..event()
            },
            ChainedEvent {
                event_version: "2",
                ..event()
            },
            ChainedEvent {
                sealed: "{}",
                ..event()
            },
            ChainedEvent {
                recorded_at: event().recorded_at + chrono::TimeDelta::microseconds(1),
                ..event()
            },
        ];
        for event in changed {
            assert_ne!(event_hash(&event), original, "{event:?}");
        }
    }

    #[test]
    fn fields_cannot_be_shifted_into_each_other() {
        let split = ChainedEvent {
            aggregate_type: "us",
            aggregate_id: "eru1",
            ..event()
        };
        let joined = ChainedEvent {
            aggregate_type: "user",
            aggregate_id: "u1",
            ..event()
        };
        assert_ne!(event_hash(&split), event_hash(&joined));
    }

    #[test]
    fn the_running_hash_depends_on_the_order_of_events() {
        let at = |global_position| LogPosition {
            transaction_id: 7,
            global_position,
        };
        let ab = running_hash(&running_hash("", "a", at(1)), "b", at(2));
        let ba = running_hash(&running_hash("", "b", at(1)), "a", at(2));
        assert_ne!(ab, ba);
        assert_eq!(ab, running_hash(&running_hash("", "a", at(1)), "b", at(2)));
    }
}
