//! Lockout: counts failed logins per user and locks the user (revoking
//! their sessions) when too many fall within the window. Failures per client
//! address are counted, and addresses blocked, by the api
//! (`app::failed_logins`), which sees unknown emails too.
//!
//! Consumes the [`HANDLED`] event types from `worker.lockout`. Every delivery
//! may come twice: a failure is stored once (keyed by its event id) and
//! every decision is recomputed from the stored failures, with times taken
//! from the events, so a redelivery decides the same and the commands it
//! repeats write nothing.
//!
//! A batch is decoded ([`decode`]), its failures stored and counted
//! ([`store`]), judged ([`policy`], no I/O), and the commands it calls for
//! run ([`commands`]), all before its transaction commits.

mod commands;
mod decode;
pub mod policy;
mod store;

use async_trait::async_trait;
use bus::{BatchHandler, Envelope, HandlerError};
use chrono::Utc;
use sqlx::{PgConnection, PgPool};

pub use commands::ACTOR;
pub use decode::HANDLED;
pub use policy::LockoutPolicy;

use commands::{CommandError, Commands};
use decode::Undecodable;
use policy::{Action, Consumed, Stored};

pub struct Lockout {
    pool: PgPool,
    policy: LockoutPolicy,
    commands: Commands,
}

/// Why a batch failed.
#[derive(Debug, thiserror::Error)]
enum LockoutError {
    /// Permanent: the event is dead-lettered.
    #[error(transparent)]
    Undecodable(#[from] Undecodable),
    #[error("lockout tables")]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl From<LockoutError> for HandlerError {
    fn from(error: LockoutError) -> Self {
        match error {
            LockoutError::Undecodable(_) => HandlerError::permanent(error),
            _ => HandlerError::transient(error),
        }
    }
}

#[async_trait]
impl BatchHandler for Lockout {
    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        Ok(self.handle_batch(events).await?)
    }
}

impl Lockout {
    pub fn new(pool: PgPool, policy: LockoutPolicy) -> Self {
        Self {
            commands: Commands::new(&pool),
            pool,
            policy,
        }
    }

    /// Stores and counts the batch's events in one transaction; runs the
    /// commands it calls for before committing, so that a failed command
    /// leaves nothing behind and the redelivered batch decides again.
    async fn handle_batch(&self, events: &[Envelope]) -> Result<(), LockoutError> {
        let consumed = decode_all(events)?;
        let mut tx = self.pool.begin().await?;
        store::take_turns(&mut tx, consumed.iter().map(|(_, event)| event)).await?;
        let mut commands = Vec::new();
        for (envelope, event) in &consumed {
            let actions = self.decide(&mut tx, envelope, event).await?;
            for action in actions {
                if let Some(command) = apply_to_store(&mut tx, action).await? {
                    commands.push((command, *envelope));
                }
            }
        }
        for (command, cause) in commands {
            self.run(command, cause).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores a failure, then asks the policy.
    async fn decide(
        &self,
        tx: &mut PgConnection,
        envelope: &Envelope,
        event: &Consumed,
    ) -> sqlx::Result<Vec<Action>> {
        let stored = match event {
            Consumed::LoginFailed {
                user_id,
                ip,
                failed_at,
            } => {
                let ip = ip.as_deref();
                if store::record_failure(tx, envelope.event_id, *user_id, ip, *failed_at).await? {
                    metrics::counter!(crate::metrics::LOGIN_FAILURES_RECORDED).increment(1);
                } else {
                    tracing::debug!(event_id = %envelope.event_id, "failure already counted");
                }
                store::stored(tx, *user_id, self.policy.window(*failed_at)).await?
            }
            Consumed::Locked { .. } | Consumed::SessionStarted { .. } | Consumed::Erased { .. } => {
                Stored::default()
            }
        };
        Ok(self.policy.decide(event, &stored, Utc::now()))
    }

    async fn run(&self, command: Action, cause: &Envelope) -> Result<(), CommandError> {
        match command {
            Action::Lock {
                user_id,
                until,
                failures,
            } => self.commands.lock(user_id, until, failures, cause).await,
            Action::RevokeSessions { user_id } => {
                self.commands.revoke_sessions(user_id, cause).await
            }
            // Written to the store while the batch was decided.
            Action::RestartCount { .. } | Action::Forget { .. } => Ok(()),
        }
    }
}

/// The batch's events the lockout consumer handles, with their envelopes.
fn decode_all(events: &[Envelope]) -> Result<Vec<(&Envelope, Consumed)>, Undecodable> {
    let mut consumed = Vec::with_capacity(events.len());
    for envelope in events {
        match decode::decode(envelope)? {
            Some(event) => consumed.push((envelope, event)),
            None => tracing::debug!(
                event_type = envelope.event_type,
                "not a lockout event; ignored"
            ),
        }
    }
    Ok(consumed)
}

/// Writes an action on the worker's own tables; hands back the commands,
/// which run once the whole batch is decided.
async fn apply_to_store(tx: &mut PgConnection, action: Action) -> sqlx::Result<Option<Action>> {
    match action {
        Action::RestartCount { user_id, at } => store::restart_count(tx, user_id, at).await?,
        Action::Forget { user_id } => store::forget(tx, user_id).await?,
        command @ (Action::Lock { .. } | Action::RevokeSessions { .. }) => {
            return Ok(Some(command))
        }
    }
    Ok(None)
}
