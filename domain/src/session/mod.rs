mod aggregate;
mod commands;
mod errors;
mod events;
mod history;
mod values;

pub use aggregate::{Session, SessionEnd};
pub use commands::SessionCommand;
pub use errors::SessionError;
pub use events::SessionEvent;
pub use history::{HistoryUnavailable, RefreshTokenHistory, SessionServices};
pub use values::{ExpiryReason, RefreshTokenHash, ReuseInterval, RevocationReason};

#[cfg(test)]
pub(crate) use events::tests::all_events as test_events;
