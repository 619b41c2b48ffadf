//! Service accounts: principals for machines (a backend, a CI job). They
//! hold roles exactly as users do but have no password; they authenticate
//! with API keys, whose secrets never reach the domain (an event carries a
//! key's SHA-256 digest, as a session carries its refresh token's).

mod aggregate;
mod commands;
mod errors;
mod events;
mod values;

pub use aggregate::{IssuedKey, ServiceAccount, ServiceAccountStatus};
pub use commands::{NewKey, ServiceAccountCommand};
pub use errors::ServiceAccountError;
pub use events::ServiceAccountEvent;
pub use values::{ApiKeyHash, ServiceAccountDescription, ServiceAccountName};

#[cfg(test)]
pub(crate) use events::tests::all_events as test_events;
