//! Lockout policy: counts failed logins per user and per client address and
//! locks the user (revoking their sessions) or blocks the address when too
//! many fall within the window.
//!
//! Consumes `user.login_failed`, `user.locked` and `session.started` from
//! `worker.lockout`. Every delivery may come twice: a failure is stored once
//! (keyed by its event id) and every decision is recomputed from the stored
//! failures, with times taken from the events, so a redelivery decides the
//! same and the commands it repeats write nothing.

use std::collections::BTreeSet;

use async_trait::async_trait;
use bus::{BatchHandler, Envelope, EventMetadata, HandlerError};
use chrono::{DateTime, Utc};
use cqrs_es::AggregateError;
use domain::{RevocationReason, SessionEvent, User, UserCommand, UserEvent};
use infra::commands::CommandBus;
use infra::sessions::UserSessions;
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::settings::LockoutPolicy;

/// `actor_id` of every event the worker writes.
pub const ACTOR: &str = "worker";

const LOGIN_FAILED: &str = "user.login_failed";
const LOCKED: &str = "user.locked";
const SESSION_STARTED: &str = "session.started";

/// Advisory lock namespaces (first key of `pg_advisory_xact_lock(int, int)`):
/// two workers counting failures of one user or one address take turns, so
/// neither misses the other's failure.
const USER_LOCK_SPACE: i32 = 0x776b_7501; // "wku\x01"
const IP_LOCK_SPACE: i32 = 0x776b_7502;

/// How often a lock is tried at once when it races another writer of the
/// user (a failed login recorded meanwhile).
const CONFLICT_ATTEMPTS: usize = 3;

pub struct Lockout {
    pool: PgPool,
    policy: LockoutPolicy,
    users: CommandBus<User>,
    sessions: UserSessions,
}

/// What a batch decided to do once its counts are stored.
enum Action<'a> {
    /// Lock the user: the failure `event` brought the count to `failures`.
    Lock {
        user_id: Uuid,
        until: DateTime<Utc>,
        failures: u32,
        event: &'a Envelope,
    },
    /// A lock was recorded: make sure the user has no active session.
    RevokeSessions { user_id: Uuid, event: &'a Envelope },
}

/// The consumed events, decoded as the domain defines them.
enum Consumed {
    LoginFailed {
        ip: Option<String>,
        failed_at: DateTime<Utc>,
    },
    Locked {
        until: DateTime<Utc>,
    },
    SessionStarted {
        user_id: Uuid,
        started_at: DateTime<Utc>,
    },
    Other,
}

fn decode(event: &Envelope) -> anyhow::Result<Consumed> {
    let understood = |error: serde_json::Error| {
        anyhow::anyhow!(
            "payload of {} {} not understood: {error}",
            event.event_type,
            event.event_id
        )
    };
    let consumed = match event.aggregate_type.as_str() {
        "user" => match UserEvent::deserialize(&event.payload).map_err(understood)? {
            UserEvent::LoginFailed { ip, failed_at } => Consumed::LoginFailed { ip, failed_at },
            UserEvent::Locked { until, .. } => Consumed::Locked { until },
            _ => Consumed::Other,
        },
        "session" => match SessionEvent::deserialize(&event.payload).map_err(understood)? {
            SessionEvent::Started {
                user_id,
                started_at,
                ..
            } => Consumed::SessionStarted {
                user_id,
                started_at,
            },
            _ => Consumed::Other,
        },
        _ => Consumed::Other,
    };
    Ok(consumed)
}

impl Lockout {
    pub fn new(pool: PgPool, policy: LockoutPolicy) -> Self {
        Self {
            users: CommandBus::new(pool.clone()),
            sessions: UserSessions::new(pool.clone()),
            pool,
            policy,
        }
    }

    /// Stores and counts the batch's events in one transaction; runs the
    /// commands it calls for before committing, so that a failed command
    /// leaves nothing behind and the redelivered batch decides again.
    async fn handle_batch(&self, events: &[Envelope]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        take_turns(&mut tx, events).await?;
        let mut actions = Vec::new();
        for event in events {
            match event.event_type.as_str() {
                LOGIN_FAILED => self.login_failed(&mut tx, event, &mut actions).await?,
                LOCKED => locked(&mut tx, event, &mut actions).await?,
                SESSION_STARTED => session_started(&mut tx, event).await?,
                other => tracing::debug!(event_type = other, "not a lockout event; ignored"),
            }
        }
        for action in actions {
            self.run(action).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn login_failed<'a>(
        &self,
        tx: &mut PgConnection,
        event: &'a Envelope,
        actions: &mut Vec<Action<'a>>,
    ) -> anyhow::Result<()> {
        let user_id = Uuid::parse_str(&event.aggregate_id)?;
        let Consumed::LoginFailed { ip, failed_at } = decode(event)? else {
            anyhow::bail!(
                "{} {} is not a failed login",
                event.event_type,
                event.event_id
            );
        };
        let stored = sqlx::query(
            "INSERT INTO login_failures (event_id, user_id, ip, failed_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.event_id)
        .bind(user_id)
        .bind(&ip)
        .bind(failed_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if stored == 1 {
            metrics::counter!("worker_login_failures_recorded_total").increment(1);
        } else {
            tracing::debug!(event_id = %event.event_id, "failure already counted");
        }

        let failures = self.user_failures(tx, user_id, failed_at).await?;
        if failures >= i64::from(self.policy.threshold) {
            actions.push(Action::Lock {
                user_id,
                until: failed_at + self.policy.duration,
                failures: u32::try_from(failures).unwrap_or(u32::MAX),
                event,
            });
            // The lock restarts the count: later failures of this batch (made
            // before the lock existed) start a new one.
            reset(tx, user_id, failed_at).await?;
        }
        if let Some(ip) = &ip {
            self.count_ip(tx, ip, failed_at).await?;
        }
        Ok(())
    }

    /// Failures of the user in `(at - window, at]` after the last reset.
    async fn user_failures(
        &self,
        tx: &mut PgConnection,
        user_id: Uuid,
        at: DateTime<Utc>,
    ) -> sqlx::Result<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM login_failures \
             WHERE user_id = $1 AND failed_at > $2 AND failed_at <= $3 \
               AND failed_at > COALESCE( \
                   (SELECT reset_at FROM lockout_resets WHERE user_id = $1), '-infinity')",
        )
        .bind(user_id)
        .bind(at - self.policy.window)
        .bind(at)
        .fetch_one(&mut *tx)
        .await
    }

    /// Blocks the address when its failures in `(at - window, at]`, across
    /// all users, reach the threshold; a block is only ever extended.
    async fn count_ip(
        &self,
        tx: &mut PgConnection,
        ip: &str,
        at: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        let failures: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM login_failures WHERE ip = $1 AND failed_at > $2 AND failed_at <= $3",
        )
        .bind(ip)
        .bind(at - self.policy.window)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        if failures < i64::from(self.policy.ip_threshold) {
            return Ok(());
        }
        let blocked_until = at + self.policy.ip_block;
        let previous: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT blocked_until FROM login_ip_blocks WHERE ip = $1")
                .bind(ip)
                .fetch_optional(&mut *tx)
                .await?;
        if previous.is_some_and(|previous| previous >= blocked_until) {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO login_ip_blocks (ip, blocked_until, failures) VALUES ($1, $2, $3) \
             ON CONFLICT (ip) DO UPDATE SET blocked_until = EXCLUDED.blocked_until, \
                 failures = EXCLUDED.failures \
             WHERE login_ip_blocks.blocked_until < EXCLUDED.blocked_until",
        )
        .bind(ip)
        .bind(blocked_until)
        .bind(i32::try_from(failures).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
        if previous.is_none_or(|previous| previous <= at) {
            metrics::counter!("worker_ips_blocked_total").increment(1);
            tracing::warn!(%ip, failures, %blocked_until, "client address blocked");
        }
        Ok(())
    }

    async fn run(&self, action: Action<'_>) -> anyhow::Result<()> {
        match action {
            Action::Lock {
                user_id,
                until,
                failures,
                event,
            } => self.lock(user_id, until, failures, event).await,
            Action::RevokeSessions { user_id, event } => self.revoke_sessions(user_id, event).await,
        }
    }

    async fn lock(
        &self,
        user_id: Uuid,
        until: DateTime<Utc>,
        failures: u32,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        let now = Utc::now();
        if until <= now {
            // Consumed too late: the lock would already be over.
            tracing::info!(%user_id, %until, "lock already ran out; not recorded");
            return Ok(());
        }
        let aggregate_id = user_id.to_string();
        let metadata = metadata(event);
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let command = UserCommand::Lock {
                until,
                failures,
                now,
            };
            match self.users.execute(&aggregate_id, command, &metadata).await {
                // A login failure recorded meanwhile: load the user again.
                Err(AggregateError::AggregateConflict) if attempt < CONFLICT_ATTEMPTS => {}
                result => break result,
            }
        };
        match result {
            Ok(outcome) if !outcome.events.is_empty() => {
                metrics::counter!("worker_users_locked_total").increment(1);
                tracing::warn!(%user_id, failures, %until, "user locked");
                self.revoke_sessions(user_id, event).await
            }
            Ok(_) => {
                // Locked already, at least as long: by an earlier delivery of
                // this event if the lock ends exactly then, and that delivery
                // may have stopped before revoking the sessions.
                let user = self.users.load(&aggregate_id).await?;
                if user.locked_until() == Some(until) {
                    self.revoke_sessions(user_id, event).await?;
                }
                Ok(())
            }
            Err(AggregateError::UserError(error)) => {
                // A rule of the aggregate (unknown user, lock period): retrying
                // cannot change the answer.
                tracing::warn!(%user_id, %error, "lock refused");
                Ok(())
            }
            Err(error) => Err(command_error(error)),
        }
    }

    /// Revokes every active session of the user (`UserSessions` retries a
    /// session that another writer changed meanwhile).
    async fn revoke_sessions(&self, user_id: Uuid, event: &Envelope) -> anyhow::Result<()> {
        self.sessions
            .revoke_all(
                user_id,
                None,
                RevocationReason::UserLocked,
                &metadata(event),
            )
            .await
            .map_err(command_error)?;
        Ok(())
    }
}

#[async_trait]
impl BatchHandler for Lockout {
    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        self.handle_batch(events)
            .await
            .map_err(HandlerError::transient)
    }
}

/// A lock (from this worker or elsewhere) restarts the user's count and
/// ends their sessions.
async fn locked<'a>(
    tx: &mut PgConnection,
    event: &'a Envelope,
    actions: &mut Vec<Action<'a>>,
) -> anyhow::Result<()> {
    let user_id = Uuid::parse_str(&event.aggregate_id)?;
    let Consumed::Locked { until } = decode(event)? else {
        anyhow::bail!("{} {} is not a lock", event.event_type, event.event_id);
    };
    let at = event.metadata.occurred_at.unwrap_or(event.recorded_at);
    reset(tx, user_id, at.max(event.recorded_at)).await?;
    if until > Utc::now() {
        actions.push(Action::RevokeSessions { user_id, event });
    }
    Ok(())
}

/// A successful login restarts the user's count.
async fn session_started(tx: &mut PgConnection, event: &Envelope) -> anyhow::Result<()> {
    let Consumed::SessionStarted {
        user_id,
        started_at,
    } = decode(event)?
    else {
        anyhow::bail!(
            "{} {} is not a session start",
            event.event_type,
            event.event_id
        );
    };
    reset(tx, user_id, started_at).await?;
    Ok(())
}

/// Failures of the user up to `at` no longer count (never moves back).
async fn reset(tx: &mut PgConnection, user_id: Uuid, at: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO lockout_resets (user_id, reset_at) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE \
             SET reset_at = GREATEST(lockout_resets.reset_at, EXCLUDED.reset_at)",
    )
    .bind(user_id)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Takes the advisory locks of every user and address in the batch, in one
/// order, so that concurrent workers neither miss each other's failures nor
/// deadlock. A hash collision only makes two keys take turns needlessly.
async fn take_turns(tx: &mut PgConnection, events: &[Envelope]) -> anyhow::Result<()> {
    let mut keys = BTreeSet::new();
    for event in events {
        match decode(event) {
            Ok(Consumed::LoginFailed { ip, .. }) => {
                keys.insert((USER_LOCK_SPACE, lock_key(&event.aggregate_id)));
                if let Some(ip) = ip {
                    keys.insert((IP_LOCK_SPACE, lock_key(&ip)));
                }
            }
            Ok(Consumed::Locked { .. }) => {
                keys.insert((USER_LOCK_SPACE, lock_key(&event.aggregate_id)));
            }
            Ok(Consumed::SessionStarted { user_id, .. }) => {
                keys.insert((USER_LOCK_SPACE, lock_key(&user_id.to_string())));
            }
            Ok(Consumed::Other) | Err(_) => {}
        }
    }
    let (spaces, keys): (Vec<i32>, Vec<i32>) = keys.into_iter().unzip();
    // unnest yields the (sorted) arrays in order: every worker locks in one order.
    sqlx::query("SELECT pg_advisory_xact_lock(s, k) FROM unnest($1::int[], $2::int[]) AS t(s, k)")
        .bind(&spaces)
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// FNV-1a: the same key in every worker process and version.
fn lock_key(name: &str) -> i32 {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    i32::from_ne_bytes(hash.to_ne_bytes())
}

/// Metadata of the events the worker writes in reaction to `event`.
fn metadata(event: &Envelope) -> EventMetadata {
    EventMetadata {
        actor_id: Some(ACTOR.to_owned()),
        correlation_id: event.metadata.correlation_id.clone(),
        causation_id: Some(event.event_id.to_string()),
        request_ip: None,
        user_agent: None,
        occurred_at: Some(Utc::now()),
    }
}

fn command_error<E: std::error::Error>(error: AggregateError<E>) -> anyhow::Error {
    anyhow::anyhow!("command failed: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(event_type: &str, payload: serde_json::Value) -> Envelope {
        Envelope {
            event_id: Uuid::new_v4(),
            global_position: 1,
            transaction_id: 1,
            aggregate_type: "user".into(),
            aggregate_id: Uuid::new_v4().to_string(),
            sequence: 1,
            event_type: event_type.into(),
            event_version: "1".into(),
            payload,
            metadata: EventMetadata {
                correlation_id: Some("corr".into()),
                ..EventMetadata::default()
            },
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn written_events_point_back_at_their_cause() {
        let event = envelope(LOCKED, json!({}));
        let written = metadata(&event);
        assert_eq!(written.actor_id.as_deref(), Some(ACTOR));
        assert_eq!(written.correlation_id.as_deref(), Some("corr"));
        assert_eq!(written.causation_id, Some(event.event_id.to_string()));
    }
}
