/// Business-rule rejections of a [`ServiceAccountCommand`](super::ServiceAccountCommand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceAccountError {
    #[error("service account already exists")]
    AlreadyExists,
    /// Also every command on an erased account.
    #[error("service account not found")]
    NotFound,
    #[error("the service account is disabled")]
    Disabled,
    #[error("the role is already assigned")]
    RoleAlreadyAssigned,
    #[error("the role is not assigned")]
    RoleNotAssigned,
    /// No such key, or one revoked, expired or replaced: nothing to act on.
    #[error("API key not found")]
    KeyNotFound,
    #[error("an API key with this id exists")]
    KeyExists,
}
