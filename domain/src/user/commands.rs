use uuid::Uuid;

use super::values::{DisplayName, Email, PasswordHash};

/// Requests to change a [`User`](super::User). Values arrive already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}
