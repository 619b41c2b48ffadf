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
