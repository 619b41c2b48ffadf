//! Second factors: time-based one-time passwords (RFC 6238) with one-time
//! recovery codes. The factor's secret is the application's to keep
//! (encrypted, outside the event store); the domain decides whether a code
//! is right at a moment, never twice for the same time step, and which
//! factors and recovery codes a person has.

mod aggregate;
mod events;
pub mod totp;

pub use aggregate::{SecondFactorCommand, SecondFactorError, SecondFactors};
pub use events::{ProofMethod, SecondFactorEvent};
pub use totp::{TotpCode, TotpRejected, TotpSecret};

#[cfg(test)]
pub(crate) use events::tests::all_events as test_events;

/// How a person proved who they are, as a token's `amr` claim names it
/// (RFC 8176's registered values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuthenticationMethod {
    /// A password (`pwd`).
    Password,
    /// A one-time password: an authenticator app's code or a recovery
    /// code (`otp`).
    OneTimePassword,
    /// A proof of possession of a hardware-bound key: a passkey (`hwk`).
    HardwareKey,
}

impl AuthenticationMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "pwd",
            Self::OneTimePassword => "otp",
            Self::HardwareKey => "hwk",
        }
    }
}

impl ProofMethod {
    /// The `amr` value a session proved this way carries beside `pwd`.
    pub fn authentication_method(self) -> AuthenticationMethod {
        match self {
            Self::Totp | Self::RecoveryCode => AuthenticationMethod::OneTimePassword,
            Self::Passkey => AuthenticationMethod::HardwareKey,
        }
    }

    /// The method an `amr` value names, for a token's claims.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Totp, Self::RecoveryCode, Self::Passkey]
            .into_iter()
            .find(|method| method.as_str() == name)
    }
}
