use chrono::{DateTime, Utc};

/// Business-rule rejections of a [`UserCommand`](super::UserCommand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user is already registered")]
    AlreadyRegistered,
    #[error("user not found")]
    NotFound,
    #[error("user is deactivated")]
    Deactivated,
    #[error("user is already deactivated")]
    AlreadyDeactivated,
    #[error("user is already active")]
    AlreadyActive,
    #[error("user is locked until {until}")]
    Locked { until: DateTime<Utc> },
    #[error("role is not assigned to the user")]
    RoleNotAssigned,
    #[error("lock must end in the future")]
    InvalidLockPeriod,
    #[error("user is not locked")]
    NotLocked,
    /// The person's data was erased: the user takes no more commands.
    #[error("user was erased")]
    Erased,
}
