mod aggregate;
mod commands;
mod email;
mod errors;
mod events;
mod values;

pub use aggregate::{User, UserStatus};
pub use commands::UserCommand;
pub use email::Email;
pub use errors::UserError;
pub use events::UserEvent;
pub use values::{DisplayName, HashingCost, Password, PasswordHash};

#[cfg(test)]
pub(crate) use events::tests::all_events as test_events;
