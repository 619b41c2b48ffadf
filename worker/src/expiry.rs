//! Session expiry: every interval, finds the active sessions past their
//! absolute or idle deadline in `sessions_view` and records their expiry on
//! the `Session` aggregate.
//!
//! The view only nominates: the aggregate decides. A session the view still
//! shows active after it ended (the projector is behind) writes nothing; one
//! that is not due by the aggregate's clock (the view is stale: it was
//! refreshed meanwhile) answers `NotDue`; two workers expiring one session
//! race on the event store's optimistic lock, and the loser's `Conflict` is
//! skipped. Exactly one `session.expired` is written either way.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use bus::EventMetadata;
use chrono::Utc;
use cqrs_es::AggregateError;
use domain::{Session, SessionCommand, SessionError};
use infra::commands::CommandBus;
use infra::shutdown::Shutdown;
use sqlx::PgPool;
use uuid::Uuid;

use crate::lockout::ACTOR;

/// How long a session this loop has dealt with is left out of the scan, so
/// that a view that lags behind cannot make it handle the same sessions on
/// every tick and never reach the others.
const SKIP_FOR: Duration = Duration::from_secs(60);

pub struct Expiry {
    pool: PgPool,
    sessions: CommandBus<Session>,
    batch: i64,
    /// Sessions handled recently, with when.
    handled: HashMap<Uuid, Instant>,
}

/// What one scan did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Sessions the view nominated.
    pub due: usize,
    /// `session.expired` events written.
    pub expired: usize,
}

impl Expiry {
    pub fn new(pool: PgPool, batch: i64) -> Self {
        Self {
            sessions: CommandBus::new(pool.clone()),
            pool,
            batch: batch.max(1),
            handled: HashMap::new(),
        }
    }

    /// Scans every `interval` until shutdown; an error is logged and the
    /// next scan runs as usual.
    pub async fn run(mut self, interval: Duration, shutdown: Shutdown) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.wait() => break,
            }
            if let Err(error) = self.scan().await {
                tracing::error!(error = %format!("{error:#}"), "session expiry scan failed");
            }
        }
        tracing::info!("session expiry stopped");
    }

    /// One scan: expires the due sessions the view shows (at most a batch).
    pub async fn scan(&mut self) -> anyhow::Result<Scan> {
        self.handled
            .retain(|_, handled_at| handled_at.elapsed() < SKIP_FOR);
        let skip: Vec<Uuid> = self.handled.keys().copied().collect();
        let due: Vec<Uuid> = sqlx::query_scalar(
            "SELECT session_id FROM sessions_view \
             WHERE status = 'active' AND (expires_at <= now() OR idle_expires_at <= now()) \
               AND session_id <> ALL($1) \
             ORDER BY LEAST(expires_at, idle_expires_at) \
             LIMIT $2",
        )
        .bind(&skip)
        .bind(self.batch)
        .fetch_all(&self.pool)
        .await
        .context("finding the sessions past their deadline")?;
        let mut scan = Scan {
            due: due.len(),
            expired: 0,
        };
        for session_id in due {
            if self.expire(session_id).await? {
                scan.expired += 1;
            }
        }
        Ok(scan)
    }

    /// Whether this call wrote the expiry. Only an outage of the event
    /// store is an error.
    async fn expire(&mut self, session_id: Uuid) -> anyhow::Result<bool> {
        let now = Utc::now();
        let metadata = EventMetadata {
            api_key_id: None,
            actor_id: Some(ACTOR.to_owned()),
            correlation_id: Some(Uuid::new_v4().to_string()),
            causation_id: Some(Uuid::new_v4().to_string()),
            request_ip: None,
            user_agent: None,
            occurred_at: Some(now),
        };
        let result = self
            .sessions
            .execute(
                &session_id.to_string(),
                SessionCommand::Expire { now },
                &metadata,
            )
            .await;
        let expired = match result {
            Ok(outcome) if !outcome.events.is_empty() => {
                metrics::counter!(crate::metrics::SESSIONS_EXPIRED).increment(1);
                tracing::info!(
                    %session_id,
                    correlation_id = metadata.correlation_id.as_deref(),
                    "session expired"
                );
                true
            }
            Ok(_) => {
                tracing::debug!(%session_id, "session already ended");
                false
            }
            Err(AggregateError::UserError(SessionError::NotDue)) => {
                tracing::debug!(%session_id, "not due by the aggregate (stale view)");
                false
            }
            Err(AggregateError::AggregateConflict) => {
                tracing::debug!(%session_id, "session changed meanwhile (another worker?)");
                false
            }
            Err(AggregateError::UserError(error)) => {
                tracing::warn!(%session_id, %error, "expiry refused");
                false
            }
            Err(error) => {
                let error = anyhow::Error::new(error);
                return Err(error.context(format!("expiring session {session_id}")));
            }
        };
        self.handled.insert(session_id, Instant::now());
        Ok(expired)
    }
}
