mod aggregate;
mod commands;
mod errors;
mod events;
mod values;

pub use aggregate::Role;
pub use commands::RoleCommand;
pub use errors::RoleError;
pub use events::RoleEvent;
pub use values::{Permission, RoleDescription, RoleName};

#[cfg(test)]
pub(crate) use events::tests::all_events as test_events;
