//! Second factors: time-based one-time passwords (RFC 6238) with one-time
//! recovery codes. The factor's secret is the application's to keep
//! (encrypted, outside the event store); the domain decides whether a code
//! is right at a moment, never twice for the same time step, and which
//! factors and recovery codes a person has.

mod aggregate;
mod events;
pub mod totp;

pub use aggregate::{SecondFactorCommand, SecondFactorError, SecondFactors};
pub use events::SecondFactorEvent;
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
}

impl AuthenticationMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "pwd",
            Self::OneTimePassword => "otp",
        }
    }
}
