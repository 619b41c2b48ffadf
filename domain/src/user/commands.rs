use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::email::Email;
use super::values::{DisplayName, PasswordHash};

/// Requests to change a [`User`](super::User). Values arrive already validated.
#[derive(Debug, Clone, PartialEq, Eq, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum UserCommand {
    Register {
        user_id: Uuid,
        email: Email,
        display_name: DisplayName,
        password_hash: PasswordHash,
    },
    ChangeEmail {
        email: Email,
    },
    ChangeDisplayName {
        display_name: DisplayName,
    },
    /// Changes email and display name together: both or neither.
    UpdateProfile {
        email: Option<Email>,
        display_name: Option<DisplayName>,
    },
    ChangePassword {
        password_hash: PasswordHash,
    },
    Deactivate,
    Reactivate,
    AssignRole {
        role_id: Uuid,
    },
    UnassignRole {
        role_id: Uuid,
    },
    /// A wrong password was presented at `at`.
    RecordLoginFailure {
        ip: Option<String>,
        at: DateTime<Utc>,
    },
    /// Blocks logins until `until`; `failures` is how many failures led to it.
    Lock {
        until: DateTime<Utc>,
        failures: u32,
        now: DateTime<Utc>,
    },
    /// An operator ends a lock before it runs out.
    Unlock {
        now: DateTime<Utc>,
    },
    /// The same password hashed again with newer parameters: not a password change.
    RehashPassword {
        password_hash: PasswordHash,
    },
    /// Erases the person: from then on the user refuses every command.
    Erase {
        now: DateTime<Utc>,
    },
}
