/// Business-rule rejections of a [`RoleCommand`](super::RoleCommand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error("role already exists")]
    AlreadyExists,
    /// Also every command on a deleted role.
    #[error("role not found")]
    NotFound,
}
