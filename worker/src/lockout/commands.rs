//! The commands the lockout policy calls for, run on the aggregates with
//! the worker as their actor and the consumed event as their cause.

use bus::{Envelope, EventMetadata};
use chrono::{DateTime, Utc};
use cqrs_es::AggregateError;
use domain::{RevocationReason, SessionError, User, UserCommand, UserError};
use infra::commands::{CommandBus, Outcome};
use infra::sessions::UserSessions;
use sqlx::PgPool;
use uuid::Uuid;

/// `actor_id` of every event the worker writes.
pub const ACTOR: &str = "worker";

/// A command that failed; worth retrying (a rule of the aggregate that
/// refuses is not an error here).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("locking user {user_id}")]
    Lock {
        user_id: Uuid,
        #[source]
        source: AggregateError<UserError>,
    },
    #[error("revoking the sessions of user {user_id}")]
    RevokeSessions {
        user_id: Uuid,
        #[source]
        source: AggregateError<SessionError>,
    },
}

pub struct Commands {
    users: CommandBus<User>,
    sessions: UserSessions,
}

impl Commands {
    pub fn new(pool: &PgPool) -> Self {
        Self {
            users: CommandBus::new(pool.clone()),
            sessions: UserSessions::new(pool.clone()),
        }
    }

    /// Locks the user until `until`, then revokes their sessions.
    pub async fn lock(
        &self,
        user_id: Uuid,
        until: DateTime<Utc>,
        failures: u32,
        cause: &Envelope,
    ) -> Result<(), CommandError> {
        let lock_error = |source| CommandError::Lock { user_id, source };
        match self.try_lock(user_id, until, failures, cause).await {
            Ok(outcome) if !outcome.events.is_empty() => {
                metrics::counter!(crate::metrics::USERS_LOCKED).increment(1);
                tracing::warn!(%user_id, failures, %until, "user locked");
                self.revoke_sessions(user_id, cause).await
            }
            Ok(_) => {
                // Locked already, at least as long: by an earlier delivery of
                // this event if the lock ends exactly then, and that delivery
                // may have stopped before revoking the sessions.
                let user = self
                    .users
                    .load(&user_id.to_string())
                    .await
                    .map_err(lock_error)?;
                if user.locked_until() == Some(until) {
                    self.revoke_sessions(user_id, cause).await?;
                }
                Ok(())
            }
            Err(AggregateError::UserError(error)) => {
                // A rule of the aggregate (unknown user, lock period): retrying
                // cannot change the answer.
                tracing::warn!(%user_id, %error, "lock refused");
                Ok(())
            }
            Err(error) => Err(lock_error(error)),
        }
    }

    /// Runs the lock command, again at once when a failed login was
    /// recorded meanwhile (the retry loads the user again).
    async fn try_lock(
        &self,
        user_id: Uuid,
        until: DateTime<Utc>,
        failures: u32,
        cause: &Envelope,
    ) -> Result<Outcome<domain::User>, AggregateError<UserError>> {
        let aggregate_id = user_id.to_string();
        let metadata = metadata(cause);
        let now = Utc::now();
        self.users
            .execute_retrying_conflicts(
                &aggregate_id,
                || UserCommand::Lock {
                    until,
                    failures,
                    now,
                },
                &metadata,
            )
            .await
    }

    /// Revokes every active session of the user (`UserSessions` retries a
    /// session that another writer changed meanwhile).
    pub async fn revoke_sessions(
        &self,
        user_id: Uuid,
        cause: &Envelope,
    ) -> Result<(), CommandError> {
        self.sessions
            .revoke_all(
                user_id,
                None,
                RevocationReason::UserLocked,
                &metadata(cause),
            )
            .await
            .map_err(|source| CommandError::RevokeSessions { user_id, source })?;
        Ok(())
    }
}

/// Metadata of the events the worker writes in reaction to `cause`.
fn metadata(cause: &Envelope) -> EventMetadata {
    EventMetadata {
        api_key_id: None,
        actor_id: Some(ACTOR.to_owned()),
        correlation_id: cause.metadata.correlation_id.clone(),
        causation_id: Some(cause.event_id.to_string()),
        request_ip: None,
        user_agent: None,
        occurred_at: Some(Utc::now()),
    }
}

#[cfg(test)]
mod tests {
    use domain::UserEvent;

    use super::*;

    #[test]
    fn written_events_point_back_at_their_cause() {
        let cause = Envelope {
            event_id: Uuid::new_v4(),
            global_position: 1,
            transaction_id: 1,
            aggregate_type: UserEvent::LOCKED.aggregate_type().into(),
            aggregate_id: Uuid::new_v4().to_string(),
            sequence: 1,
            event_type: UserEvent::LOCKED.name().into(),
            event_version: UserEvent::LOCKED.version().into(),
            payload: serde_json::json!({}),
            metadata: EventMetadata {
                correlation_id: Some("corr".into()),
                ..EventMetadata::default()
            },
            recorded_at: Utc::now(),
        };
        let written = metadata(&cause);
        assert_eq!(written.actor_id.as_deref(), Some(ACTOR));
        assert_eq!(written.correlation_id.as_deref(), Some("corr"));
        assert_eq!(written.causation_id, Some(cause.event_id.to_string()));
    }
}
