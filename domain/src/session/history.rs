//! The outside check a refresh needs: when an earlier refresh token of the
//! session was rotated away. The session's state keeps only the current
//! token and the one before it, so a refresh costs the same after 10 or
//! 10,000 rotations; any older token presented again is looked up here.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::values::RefreshTokenHash;

/// Where the session's earlier refresh tokens are found (the event store).
#[async_trait]
pub trait RefreshTokenHistory: Send + Sync {
    /// When `token` stopped being the session's refresh token, if it ever
    /// was one and was rotated away; `None` for a token never issued to it.
    async fn superseded_at(
        &self,
        session_id: Uuid,
        token: &RefreshTokenHash,
    ) -> Result<Option<DateTime<Utc>>, HistoryUnavailable>;
}

/// The history could not be read; `source` says why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the session's refresh-token history could not be read")]
pub struct HistoryUnavailable(#[source] pub Arc<dyn std::error::Error + Send + Sync>);

impl PartialEq for HistoryUnavailable {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for HistoryUnavailable {}

/// What a [`Session`](super::Session) needs from outside to decide.
#[derive(Clone)]
pub struct SessionServices {
    history: Arc<dyn RefreshTokenHistory>,
}

impl SessionServices {
    pub fn new(history: Arc<dyn RefreshTokenHistory>) -> Self {
        Self { history }
    }

    pub fn history(&self) -> &dyn RefreshTokenHistory {
        self.history.as_ref()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::session::SessionEvent;

    /// The history the given events make: the reference the event store's
    /// lookup must agree with.
    pub struct RecordedHistory(pub Vec<SessionEvent>);

    #[async_trait]
    impl RefreshTokenHistory for RecordedHistory {
        async fn superseded_at(
            &self,
            _session_id: Uuid,
            token: &RefreshTokenHash,
        ) -> Result<Option<DateTime<Utc>>, HistoryUnavailable> {
            let mut current: Option<&RefreshTokenHash> = None;
            for event in &self.0 {
                match event {
                    SessionEvent::Started {
                        refresh_token_hash, ..
                    } => current = Some(refresh_token_hash),
                    SessionEvent::Refreshed {
                        refresh_token_hash,
                        refreshed_at,
                    } => {
                        if current == Some(token) {
                            return Ok(Some(*refreshed_at));
                        }
                        current = Some(refresh_token_hash);
                    }
                    _ => {}
                }
            }
            Ok(None)
        }
    }

    /// The services of a session whose stream is `events`.
    pub fn services_of(events: &[SessionEvent]) -> SessionServices {
        SessionServices::new(Arc::new(RecordedHistory(events.to_vec())))
    }

    #[derive(Debug, thiserror::Error)]
    #[error("database is down")]
    pub struct Down;

    /// A history that cannot be read.
    pub struct Unreadable(pub Arc<dyn std::error::Error + Send + Sync>);

    #[async_trait]
    impl RefreshTokenHistory for Unreadable {
        async fn superseded_at(
            &self,
            _session_id: Uuid,
            _token: &RefreshTokenHash,
        ) -> Result<Option<DateTime<Utc>>, HistoryUnavailable> {
            Err(HistoryUnavailable(self.0.clone()))
        }
    }
}
