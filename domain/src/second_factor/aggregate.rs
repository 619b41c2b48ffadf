use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::{ProofMethod, SecondFactorEvent};

/// Requests to change a person's second factors. Digests arrive computed.
#[derive(Debug, Clone, PartialEq, Eq, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum SecondFactorCommand {
    EnableTotp {
        factor_id: Uuid,
    },
    RemoveTotp {
        factor_id: Uuid,
    },
    GenerateRecoveryCodes {
        code_hashes: Vec<String>,
    },
    UseRecoveryCode {
        code_hash: String,
    },
    RegisterPasskey {
        factor_id: Uuid,
    },
    RemovePasskey {
        factor_id: Uuid,
    },
    /// Records that the person proved a factor in `session_id` (checked
    /// by the application: a code, a recovery code, a passkey assertion).
    RecordVerification {
        session_id: Uuid,
        method: ProofMethod,
    },
}

/// Business-rule rejections of a [`SecondFactorCommand`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecondFactorError {
    #[error("the authenticator app is already enabled")]
    AlreadyEnabled,
    #[error("second factor not found")]
    NotFound,
    /// Unknown or already used; one answer for both.
    #[error("the recovery code is not valid")]
    RecoveryCodeNotValid,
    #[error("the person has no second factor to prove")]
    NoFactor,
}

/// A person's second factors: one stream per person, its id the user's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SecondFactors {
    totp: BTreeSet<Uuid>,
    #[serde(default)]
    passkeys: BTreeSet<Uuid>,
    /// Each recovery code's digest, and whether it was used.
    recovery_codes: BTreeMap<String, bool>,
}

impl SecondFactors {
    /// The enabled authenticator apps.
    pub fn totp_factors(&self) -> &BTreeSet<Uuid> {
        &self.totp
    }

    /// The registered passkeys.
    pub fn passkeys(&self) -> &BTreeSet<Uuid> {
        &self.passkeys
    }

    /// Whether login asks for a second factor.
    pub fn any_enabled(&self) -> bool {
        !self.totp.is_empty() || !self.passkeys.is_empty()
    }

    pub fn recovery_codes_left(&self) -> usize {
        self.recovery_codes.values().filter(|used| !**used).count()
    }

    fn decide(
        &self,
        command: SecondFactorCommand,
    ) -> Result<Vec<SecondFactorEvent>, SecondFactorError> {
        use SecondFactorCommand as C;
        use SecondFactorEvent as E;
        match command {
            C::EnableTotp { factor_id } => match self.totp.contains(&factor_id) {
                true => Err(SecondFactorError::AlreadyEnabled),
                false => Ok(vec![E::TotpEnabled { factor_id }]),
            },
            C::RemoveTotp { factor_id } => match self.totp.contains(&factor_id) {
                true => Ok(vec![E::TotpRemoved { factor_id }]),
                false => Err(SecondFactorError::NotFound),
            },
            C::GenerateRecoveryCodes { code_hashes } => Ok(vec![E::RecoveryCodesGenerated {
                code_hashes: code_hashes.join(" "),
            }]),
            C::UseRecoveryCode { code_hash } => match self.recovery_codes.get(&code_hash) {
                Some(false) => Ok(vec![E::RecoveryCodeUsed { code_hash }]),
                _ => Err(SecondFactorError::RecoveryCodeNotValid),
            },
            C::RegisterPasskey { factor_id } => match self.passkeys.contains(&factor_id) {
                true => Err(SecondFactorError::AlreadyEnabled),
                false => Ok(vec![E::PasskeyRegistered { factor_id }]),
            },
            C::RemovePasskey { factor_id } => match self.passkeys.contains(&factor_id) {
                true => Ok(vec![E::PasskeyRemoved { factor_id }]),
                false => Err(SecondFactorError::NotFound),
            },
            C::RecordVerification { session_id, method } => match self.any_enabled() {
                true => Ok(vec![E::Verified { session_id, method }]),
                false => Err(SecondFactorError::NoFactor),
            },
        }
    }
}

impl Aggregate for SecondFactors {
    const TYPE: &'static str = "second_factor";
    type Command = SecondFactorCommand;
    type Event = SecondFactorEvent;
    type Error = SecondFactorError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            SecondFactorEvent::TotpEnabled { factor_id } => {
                self.totp.insert(factor_id);
            }
            SecondFactorEvent::TotpRemoved { factor_id } => {
                self.totp.remove(&factor_id);
            }
            SecondFactorEvent::RecoveryCodesGenerated { code_hashes } => {
                self.recovery_codes = code_hashes
                    .split_whitespace()
                    .map(|hash| (hash.to_owned(), false))
                    .collect();
            }
            SecondFactorEvent::RecoveryCodeUsed { code_hash } => {
                if let Some(used) = self.recovery_codes.get_mut(&code_hash) {
                    *used = true;
                }
            }
            SecondFactorEvent::PasskeyRegistered { factor_id } => {
                self.passkeys.insert(factor_id);
            }
            SecondFactorEvent::PasskeyRemoved { factor_id } => {
                self.passkeys.remove(&factor_id);
            }
            SecondFactorEvent::Verified { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACTOR: Uuid = Uuid::from_u128(1);

    fn when(
        history: Vec<SecondFactorEvent>,
        command: SecondFactorCommand,
    ) -> Result<Vec<SecondFactorEvent>, SecondFactorError> {
        let mut factors = SecondFactors::default();
        history.into_iter().for_each(|event| factors.apply(event));
        factors.decide(command)
    }

    fn generated(hashes: &[&str]) -> SecondFactorEvent {
        SecondFactorEvent::RecoveryCodesGenerated {
            code_hashes: hashes.join(" "),
        }
    }

    #[test]
    fn a_factor_is_enabled_once_and_removed_once() {
        let enabled = SecondFactorEvent::TotpEnabled { factor_id: FACTOR };
        let enable = SecondFactorCommand::EnableTotp { factor_id: FACTOR };
        let remove = SecondFactorCommand::RemoveTotp { factor_id: FACTOR };
        assert_eq!(when(vec![], enable.clone()), Ok(vec![enabled.clone()]));
        assert_eq!(
            when(vec![enabled.clone()], enable),
            Err(SecondFactorError::AlreadyEnabled)
        );
        assert_eq!(
            when(vec![], remove.clone()),
            Err(SecondFactorError::NotFound)
        );
        assert_eq!(
            when(vec![enabled], remove),
            Ok(vec![SecondFactorEvent::TotpRemoved { factor_id: FACTOR }])
        );
    }

    #[test]
    fn a_passkey_is_registered_once_and_counts_as_a_factor() {
        let registered = SecondFactorEvent::PasskeyRegistered { factor_id: FACTOR };
        let register = SecondFactorCommand::RegisterPasskey { factor_id: FACTOR };
        assert_eq!(when(vec![], register.clone()), Ok(vec![registered.clone()]));
        assert_eq!(
            when(vec![registered.clone()], register),
            Err(SecondFactorError::AlreadyEnabled)
        );
        assert_eq!(
            when(
                vec![registered.clone()],
                SecondFactorCommand::RemoveTotp { factor_id: FACTOR }
            ),
            Err(SecondFactorError::NotFound)
        );
        let mut factors = SecondFactors::default();
        factors.apply(registered);
        assert!(factors.any_enabled());
        factors.apply(SecondFactorEvent::PasskeyRemoved { factor_id: FACTOR });
        assert!(!factors.any_enabled());
    }

    #[test]
    fn a_verification_is_recorded_only_for_a_person_with_a_factor() {
        let session_id = Uuid::from_u128(9);
        let record = SecondFactorCommand::RecordVerification {
            session_id,
            method: ProofMethod::Totp,
        };
        assert_eq!(
            when(vec![], record.clone()),
            Err(SecondFactorError::NoFactor)
        );
        assert_eq!(
            when(
                vec![SecondFactorEvent::TotpEnabled { factor_id: FACTOR }],
                record
            ),
            Ok(vec![SecondFactorEvent::Verified {
                session_id,
                method: ProofMethod::Totp
            }])
        );
    }

    #[test]
    fn a_recovery_code_is_used_once_and_a_new_set_replaces_the_old() {
        let use_a = SecondFactorCommand::UseRecoveryCode {
            code_hash: "a".into(),
        };
        let used_a = SecondFactorEvent::RecoveryCodeUsed {
            code_hash: "a".into(),
        };
        assert_eq!(
            when(vec![generated(&["a", "b"])], use_a.clone()),
            Ok(vec![used_a.clone()])
        );
        assert_eq!(
            when(vec![generated(&["a", "b"]), used_a.clone()], use_a.clone()),
            Err(SecondFactorError::RecoveryCodeNotValid)
        );
        assert_eq!(
            when(vec![generated(&["a"]), generated(&["c"])], use_a.clone()),
            Err(SecondFactorError::RecoveryCodeNotValid)
        );
        assert_eq!(
            when(vec![], use_a),
            Err(SecondFactorError::RecoveryCodeNotValid)
        );
        let mut factors = SecondFactors::default();
        for event in [generated(&["a", "b"]), used_a] {
            factors.apply(event);
        }
        assert_eq!(factors.recovery_codes_left(), 1);
    }
}
