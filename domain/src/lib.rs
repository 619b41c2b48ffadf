//! Aggregates, commands, events and rules of the identity service. No I/O.

pub mod user;
pub mod validation;

pub use user::{
    DisplayName, Email, HashingCost, Password, PasswordHash, User, UserCommand, UserError,
    UserEvent, UserStatus,
};
pub use validation::ValidationError;
