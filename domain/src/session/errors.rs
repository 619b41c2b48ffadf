use super::history::HistoryUnavailable;

/// Business-rule rejections of a [`SessionCommand`](super::SessionCommand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session is already started")]
    AlreadyStarted,
    #[error("session not found")]
    NotFound,
    #[error("session has ended")]
    Ended,
    /// The session is past its absolute or idle deadline, but no expiry is recorded yet.
    #[error("session has expired")]
    Expired,
    #[error("refresh token is not valid for this session")]
    InvalidRefreshToken,
    #[error("session is not due to expire")]
    NotDue,
    #[error(transparent)]
    HistoryUnavailable(#[from] HistoryUnavailable),
}
