//! Second factors, the parts that are pure rules: time-based one-time
//! passwords (RFC 6238). The factor's secret is the caller's to keep
//! (encrypted, outside the event store); the domain only decides whether a
//! code is right at a moment, and never twice for the same time step.

pub mod totp;

pub use totp::{TotpCode, TotpRejected, TotpSecret};

/// How a person proved who they are, as a token's `amr` claim names it
/// (RFC 8176's registered values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuthenticationMethod {
    /// A password (`pwd`).
    Password,
}

impl AuthenticationMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "pwd",
        }
    }
}
