use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::contract::{EventType, PayloadField};

/// What happened to a person's [`SecondFactors`](super::SecondFactors).
/// A factor is named by its id only: a TOTP secret is stored encrypted,
/// a passkey's public key beside it, both outside the event store.
/// Recovery codes are carried as SHA-256 digests (redacted on the way
/// out), as refresh tokens are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SecondFactorEvent {
    /// Enrolment confirmed with a right code: the factor is asked for at login.
    TotpEnabled {
        factor_id: Uuid,
    },
    TotpRemoved {
        factor_id: Uuid,
    },
    /// A new set, replacing every earlier code: their SHA-256 digests,
    /// lowercase hex, separated by single spaces (one string, so that a
    /// redacted event reads `[redacted]` at this path like every secret).
    RecoveryCodesGenerated {
        code_hashes: String,
    },
    RecoveryCodeUsed {
        code_hash: String,
    },
    /// A passkey (a WebAuthn credential) registered with a right attestation.
    PasskeyRegistered {
        factor_id: Uuid,
    },
    PasskeyRemoved {
        factor_id: Uuid,
    },
    /// The person proved a second factor in a session: at its login, or
    /// later (a step-up), so that the session may run sensitive commands
    /// for a while.
    Verified {
        session_id: Uuid,
        method: ProofMethod,
    },
}

/// What a second factor was proved with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProofMethod {
    Totp,
    RecoveryCode,
    Passkey,
}

impl ProofMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::RecoveryCode => "recovery_code",
            Self::Passkey => "passkey",
        }
    }
}

impl SecondFactorEvent {
    pub const TOTP_ENABLED: EventType = EventType::new("second_factor.totp_enabled", "TotpEnabled");
    pub const TOTP_REMOVED: EventType = EventType::new("second_factor.totp_removed", "TotpRemoved");
    pub const RECOVERY_CODES_GENERATED: EventType = EventType::new(
        "second_factor.recovery_codes_generated",
        "RecoveryCodesGenerated",
    );
    pub const RECOVERY_CODE_USED: EventType =
        EventType::new("second_factor.recovery_code_used", "RecoveryCodeUsed");

    pub const PASSKEY_REGISTERED: EventType =
        EventType::new("second_factor.passkey_registered", "PasskeyRegistered");
    pub const PASSKEY_REMOVED: EventType =
        EventType::new("second_factor.passkey_removed", "PasskeyRemoved");
    pub const VERIFIED: EventType = EventType::new("second_factor.verified", "Verified");

    /// Every value [`DomainEvent::event_type`] can return.
    pub const EVENT_TYPES: &'static [EventType] = &[
        Self::TOTP_ENABLED,
        Self::TOTP_REMOVED,
        Self::RECOVERY_CODES_GENERATED,
        Self::RECOVERY_CODE_USED,
        Self::PASSKEY_REGISTERED,
        Self::PASSKEY_REMOVED,
        Self::VERIFIED,
    ];

    /// Payload fields SQL reads (see [`crate::contract::PAYLOAD_FIELDS_READ_BY_SQL`]).
    pub const TOTP_ENABLED_FACTOR_ID: PayloadField = Self::TOTP_ENABLED.field("factor_id");
    pub const TOTP_REMOVED_FACTOR_ID: PayloadField = Self::TOTP_REMOVED.field("factor_id");
    pub const RECOVERY_CODES_GENERATED_CODE_HASHES: PayloadField =
        Self::RECOVERY_CODES_GENERATED.field("code_hashes");
    pub const RECOVERY_CODE_USED_CODE_HASH: PayloadField =
        Self::RECOVERY_CODE_USED.field("code_hash");
    pub const PASSKEY_REGISTERED_FACTOR_ID: PayloadField =
        Self::PASSKEY_REGISTERED.field("factor_id");
    pub const PASSKEY_REMOVED_FACTOR_ID: PayloadField = Self::PASSKEY_REMOVED.field("factor_id");
    pub const VERIFIED_SESSION_ID: PayloadField = Self::VERIFIED.field("session_id");
    pub const VERIFIED_METHOD: PayloadField = Self::VERIFIED.field("method");

    pub fn contract_type(&self) -> EventType {
        match self {
            Self::TotpEnabled { .. } => Self::TOTP_ENABLED,
            Self::TotpRemoved { .. } => Self::TOTP_REMOVED,
            Self::RecoveryCodesGenerated { .. } => Self::RECOVERY_CODES_GENERATED,
            Self::RecoveryCodeUsed { .. } => Self::RECOVERY_CODE_USED,
            Self::PasskeyRegistered { .. } => Self::PASSKEY_REGISTERED,
            Self::PasskeyRemoved { .. } => Self::PASSKEY_REMOVED,
            Self::Verified { .. } => Self::VERIFIED,
        }
    }

    /// One readable line for auditors.
    pub fn summary(&self) -> String {
        match self {
            Self::TotpEnabled { factor_id } => format!("authenticator app {factor_id} enabled"),
            Self::TotpRemoved { factor_id } => format!("authenticator app {factor_id} removed"),
            Self::RecoveryCodesGenerated { code_hashes } => format!(
                "{} recovery codes generated",
                code_hashes.split_whitespace().count()
            ),
            Self::RecoveryCodeUsed { .. } => "a recovery code used".to_owned(),
            Self::PasskeyRegistered { factor_id } => format!("passkey {factor_id} registered"),
            Self::PasskeyRemoved { factor_id } => format!("passkey {factor_id} removed"),
            Self::Verified { session_id, method } => format!(
                "second factor ({}) proved in session {session_id}",
                method.as_str()
            ),
        }
    }

    /// Replaces the codes' digests with [`crate::REDACTED`].
    pub fn redact_secrets(&mut self) {
        match self {
            Self::RecoveryCodesGenerated { code_hashes: hash }
            | Self::RecoveryCodeUsed { code_hash: hash } => *hash = crate::REDACTED.to_owned(),
            Self::TotpEnabled { .. }
            | Self::TotpRemoved { .. }
            | Self::PasskeyRegistered { .. }
            | Self::PasskeyRemoved { .. }
            | Self::Verified { .. } => {}
        }
    }
}

impl DomainEvent for SecondFactorEvent {
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

    pub(crate) fn all_events() -> Vec<SecondFactorEvent> {
        vec![
            SecondFactorEvent::TotpEnabled {
                factor_id: Uuid::from_u128(1),
            },
            SecondFactorEvent::TotpRemoved {
                factor_id: Uuid::from_u128(1),
            },
            SecondFactorEvent::RecoveryCodesGenerated {
                code_hashes: format!("{} {}", "0a08".repeat(16), "0b09".repeat(16)),
            },
            SecondFactorEvent::RecoveryCodeUsed {
                code_hash: "0a08".repeat(16),
            },
            SecondFactorEvent::PasskeyRegistered {
                factor_id: Uuid::from_u128(2),
            },
            SecondFactorEvent::PasskeyRemoved {
                factor_id: Uuid::from_u128(2),
            },
            SecondFactorEvent::Verified {
                session_id: Uuid::from_u128(3),
                method: ProofMethod::Totp,
            },
        ]
    }

    #[test]
    fn every_event_has_a_contract_type_and_round_trips() {
        let types: Vec<String> = all_events().iter().map(DomainEvent::event_type).collect();
        let names: Vec<&str> = SecondFactorEvent::EVENT_TYPES
            .iter()
            .map(|t| t.name())
            .collect();
        assert_eq!(types, names);
        for event in all_events() {
            assert!(!event.summary().is_empty());
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(
                serde_json::from_str::<SecondFactorEvent>(&json).unwrap(),
                event
            );
        }
    }

    #[test]
    fn the_codes_digests_are_redacted_on_the_way_out() {
        for mut event in all_events() {
            event.redact_secrets();
            let json = serde_json::to_string(&event).unwrap();
            assert!(!json.contains("0a08") && !json.contains("0b09"), "{json}");
        }
    }
}
