//! Ending every session of a user (deactivation, lock, password change).
//! The sessions are found in the event store, not in `sessions_view`, so a
//! session the projector has not applied yet is not missed.

use chrono::Utc;
use cqrs_es::Aggregate;
use cqrs_es::AggregateError;
use domain::{RevocationReason, Session, SessionCommand, SessionError, SessionEvent};
use sqlx::PgPool;
use uuid::Uuid;

use crate::commands::CommandBus;

pub struct UserSessions {
    sessions: CommandBus<Session>,
    pool: PgPool,
}

impl UserSessions {
    pub fn new(pool: PgPool) -> Self {
        Self {
            sessions: CommandBus::new(pool.clone()),
            pool,
        }
    }

    /// Sessions of the user that were started and are neither revoked nor expired.
    pub async fn active(&self, user_id: Uuid) -> sqlx::Result<Vec<Uuid>> {
        // Constants, not input, are written into the text so that the
        // planner matches the partial index on started sessions' user ids.
        let sql = format!(
            "SELECT s.aggregate_id::uuid FROM events s \
             WHERE s.aggregate_type = '{kind}' AND s.event_type = '{started}' \
               AND (s.{user_id}) = $1 \
               AND NOT EXISTS (SELECT 1 FROM events e \
                   WHERE e.aggregate_type = '{kind}' AND e.aggregate_id = s.aggregate_id \
                     AND e.event_type IN ('{revoked}', '{expired}'))",
            kind = Session::TYPE,
            started = SessionEvent::STARTED,
            user_id = SessionEvent::STARTED_USER_ID.json_text(),
            revoked = SessionEvent::REVOKED,
            expired = SessionEvent::EXPIRED,
        );
        sqlx::query_scalar(&sql)
            .bind(user_id.to_string())
            .fetch_all(&self.pool)
            .await
    }

    /// Revokes every active session of the user except `keep`; returns the
    /// position of the last revocation written (0 if none was).
    pub async fn revoke_all(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        reason: RevocationReason,
        metadata: &bus::EventMetadata,
    ) -> Result<i64, AggregateError<SessionError>> {
        let active = self
            .active(user_id)
            .await
            .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?;
        let mut position = 0;
        for session_id in active.into_iter().filter(|id| Some(*id) != keep) {
            position = position.max(self.revoke(session_id, reason, metadata).await?);
        }
        Ok(position)
    }

    /// Revokes one session, again at once when a concurrent writer (a
    /// refresh, the expiry loop, a logout) appended to it first: the retry
    /// reloads the session, and an ended one writes nothing.
    async fn revoke(
        &self,
        session_id: Uuid,
        reason: RevocationReason,
        metadata: &bus::EventMetadata,
    ) -> Result<i64, AggregateError<SessionError>> {
        let outcome = self
            .sessions
            .execute_retrying_conflicts(
                &session_id.to_string(),
                || SessionCommand::Revoke {
                    reason,
                    now: Utc::now(),
                },
                metadata,
            )
            .await?;
        Ok(outcome.position)
    }
}
