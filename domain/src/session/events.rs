use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;

use crate::contract::{EventType, PayloadField};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::values::{ExpiryReason, RefreshTokenHash, RevocationReason};

/// What happened to a [`Session`](super::Session).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SessionEvent {
    Started {
        session_id: Uuid,
        user_id: Uuid,
        refresh_token_hash: RefreshTokenHash,
        started_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        idle_timeout_seconds: i64,
        ip: Option<String>,
        user_agent: Option<String>,
        /// The person proved a second factor too. Absent (false) in every
        /// session started with a password alone, and in older events.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        second_factor_used: bool,
    },
    /// The refresh token was rotated: `refresh_token_hash` is the new current one.
    Refreshed {
        refresh_token_hash: RefreshTokenHash,
        refreshed_at: DateTime<Utc>,
    },
    Revoked {
        reason: RevocationReason,
        revoked_at: DateTime<Utc>,
    },
    Expired {
        reason: ExpiryReason,
        expired_at: DateTime<Utc>,
    },
}

impl SessionEvent {
    pub const STARTED: EventType = EventType::new("session.started", "Started");
    pub const REFRESHED: EventType = EventType::new("session.refreshed", "Refreshed");
    pub const REVOKED: EventType = EventType::new("session.revoked", "Revoked");
    pub const EXPIRED: EventType = EventType::new("session.expired", "Expired");

    /// Every value [`DomainEvent::event_type`] can return.
    pub const EVENT_TYPES: &'static [EventType] =
        &[Self::STARTED, Self::REFRESHED, Self::REVOKED, Self::EXPIRED];

    /// Payload fields SQL reads (see [`crate::contract::PAYLOAD_FIELDS_READ_BY_SQL`]).
    pub const STARTED_USER_ID: PayloadField = Self::STARTED.field("user_id");
    pub const STARTED_EXPIRES_AT: PayloadField = Self::STARTED.field("expires_at");
    pub const STARTED_STARTED_AT: PayloadField = Self::STARTED.field("started_at");
    pub const STARTED_IDLE_TIMEOUT_SECONDS: PayloadField =
        Self::STARTED.field("idle_timeout_seconds");
    pub const REFRESHED_REFRESHED_AT: PayloadField = Self::REFRESHED.field("refreshed_at");
    pub const STARTED_REFRESH_TOKEN_HASH: PayloadField = Self::STARTED.field("refresh_token_hash");
    pub const REFRESHED_REFRESH_TOKEN_HASH: PayloadField =
        Self::REFRESHED.field("refresh_token_hash");

    /// Personal payload fields (see [`crate::erasure::PERSONAL_PAYLOAD_FIELDS`]).
    pub const STARTED_IP: PayloadField = Self::STARTED.field("ip");
    pub const STARTED_USER_AGENT: PayloadField = Self::STARTED.field("user_agent");

    /// This event's entry in the event contract.
    pub fn contract_type(&self) -> EventType {
        match self {
            Self::Started { .. } => Self::STARTED,
            Self::Refreshed { .. } => Self::REFRESHED,
            Self::Revoked { .. } => Self::REVOKED,
            Self::Expired { .. } => Self::EXPIRED,
        }
    }

    /// One readable line for auditors; never mentions a secret.
    pub fn summary(&self) -> String {
        match self {
            Self::Started {
                user_id,
                expires_at,
                ip,
                ..
            } => {
                let from = ip
                    .as_deref()
                    .map(|ip| format!(" from {ip}"))
                    .unwrap_or_default();
                format!(
                    "session started for user {user_id}{from}, expires {}",
                    expires_at.to_rfc3339()
                )
            }
            Self::Refreshed { .. } => "refresh token rotated".to_owned(),
            Self::Revoked { reason, .. } => format!("session revoked: {}", reason.as_str()),
            Self::Expired { reason, .. } => format!("session expired: {}", reason.as_str()),
        }
    }

    /// Replaces any refresh token hash with [`RefreshTokenHash::redacted`], for events
    /// that leave the service.
    pub fn redact_secrets(&mut self) {
        match self {
            Self::Started {
                refresh_token_hash, ..
            }
            | Self::Refreshed {
                refresh_token_hash, ..
            } => *refresh_token_hash = RefreshTokenHash::redacted(),
            Self::Revoked { .. } | Self::Expired { .. } => {}
        }
    }
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> String {
        self.contract_type().name().to_owned()
    }

    fn event_version(&self) -> String {
        self.contract_type().version().to_owned()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, second).unwrap()
    }

    fn started() -> SessionEvent {
        SessionEvent::Started {
            second_factor_used: false,
            session_id: Uuid::nil(),
            user_id: Uuid::from_u128(1),
            refresh_token_hash: RefreshTokenHash::new(DIGEST.into()),
            started_at: at(0),
            expires_at: at(30),
            idle_timeout_seconds: 10,
            ip: Some("203.0.113.7".into()),
            user_agent: Some("Mozilla/5.0 (Sample)".into()),
        }
    }

    fn refreshed() -> SessionEvent {
        SessionEvent::Refreshed {
            refresh_token_hash: RefreshTokenHash::new(DIGEST.replace('9', "8")),
            refreshed_at: at(5),
        }
    }

    pub(crate) fn all_events() -> Vec<SessionEvent> {
        vec![
            started(),
            refreshed(),
            SessionEvent::Revoked {
                reason: RevocationReason::RefreshTokenReused,
                revoked_at: at(6),
            },
            SessionEvent::Expired {
                reason: ExpiryReason::Idle,
                expired_at: at(7),
            },
        ]
    }

    #[test]
    fn every_event_has_a_summary_without_secrets() {
        let summaries: Vec<String> = all_events().iter().map(SessionEvent::summary).collect();
        assert_eq!(
            summaries,
            [
                "session started for user 00000000-0000-0000-0000-000000000001 from 203.0.113.7, \
                 expires 2024-05-01T12:00:30+00:00",
                "refresh token rotated",
                "session revoked: refresh_token_reused",
                "session expired: idle",
            ]
        );
        assert_eq!(summaries.len(), SessionEvent::EVENT_TYPES.len());
        assert!(summaries.iter().all(|s| !s.contains("0a08")));
    }

    #[test]
    fn every_event_round_trips_through_json() {
        for event in all_events() {
            let json = serde_json::to_string(&event).unwrap();
            let back: SessionEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn payload_is_externally_tagged_with_plain_string_values() {
        assert_eq!(
            serde_json::to_value(started()).unwrap(),
            json!({"Started": {
                "session_id": "00000000-0000-0000-0000-000000000000",
                "user_id": "00000000-0000-0000-0000-000000000001",
                "refresh_token_hash": DIGEST,
                "started_at": "2024-05-01T12:00:00Z",
                "expires_at": "2024-05-01T12:00:30Z",
                "idle_timeout_seconds": 10,
                "ip": "203.0.113.7",
                "user_agent": "Mozilla/5.0 (Sample)",
            }})
        );
        assert_eq!(
            serde_json::to_value(SessionEvent::Revoked {
                reason: RevocationReason::LoggedOut,
                revoked_at: at(6),
            })
            .unwrap(),
            json!({"Revoked": {"reason": "logged_out", "revoked_at": "2024-05-01T12:00:06Z"}})
        );
    }

    #[test]
    fn event_types_are_stable_dotted_names() {
        let types: Vec<String> = all_events().iter().map(DomainEvent::event_type).collect();
        let names: Vec<&str> = SessionEvent::EVENT_TYPES.iter().map(|t| t.name()).collect();
        assert_eq!(types, names);
        assert!(all_events().iter().all(|e| e.event_version() == "1"));
    }

    #[test]
    fn redact_secrets_replaces_refresh_token_hashes() {
        let mut events = vec![started(), refreshed()];
        events.iter_mut().for_each(SessionEvent::redact_secrets);
        for event in &events {
            let json = serde_json::to_string(event).unwrap();
            assert!(!json.contains("0a08"), "{json}");
            assert!(json.contains("[redacted]"), "{json}");
        }
        let SessionEvent::Started {
            refresh_token_hash,
            user_id,
            ..
        } = &events[0]
        else {
            panic!("expected Started");
        };
        assert!(refresh_token_hash.is_redacted());
        assert_eq!(*user_id, Uuid::from_u128(1));
    }

    #[test]
    fn redact_secrets_leaves_other_events_unchanged() {
        for original in all_events().into_iter().skip(2) {
            let mut redacted = original.clone();
            redacted.redact_secrets();
            assert_eq!(redacted, original);
        }
    }
}
