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
}
