//! Read-your-writes: how far a projection has got, and waiting (bounded)
//! until it has applied a given global position.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infra::checkpoints::Checkpoint;
use infra::event_log::{self, LogPosition};
use infra::shutdown::Shutdown;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::problem::{ApiError, FieldError};

/// Re-read the checkpoint at least this often while waiting, in case a
/// notification was missed (the listener reconnects after a failure).
const RECHECK_EVERY: Duration = Duration::from_millis(200);

pub struct Freshness {
    pool: PgPool,
    projection: &'static str,
    advanced: Arc<Notify>,
    max_wait: Duration,
}

impl Freshness {
    /// Starts listening for the projector's checkpoint notifications.
    pub fn start(
        pool: PgPool,
        projection: &'static str,
        max_wait: Duration,
        shutdown: Shutdown,
    ) -> Self {
        let advanced = Arc::new(Notify::new());
        tokio::spawn(listen(pool.clone(), advanced.clone(), shutdown));
        Self {
            pool,
            projection,
            advanced,
            max_wait,
        }
    }

    pub async fn applied(&self) -> Result<LogPosition, ApiError> {
        Checkpoint::Projection(self.projection)
            .load(&self.pool)
            .await
            .map_err(ApiError::internal)
    }

    /// The applied position once it includes the last event one stream has
    /// now; `NotYetProjected` after the configured bound.
    pub async fn wait_for_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<LogPosition, ApiError> {
        let head = event_log::stream_head(&self.pool, aggregate_type, aggregate_id)
            .await
            .map_err(ApiError::internal)?;
        self.wait_for(head).await
    }

    /// The applied position once it includes `min_position` (if given);
    /// `NotYetProjected` after the configured bound.
    pub async fn wait_for(&self, min_position: Option<i64>) -> Result<LogPosition, ApiError> {
        let applied = self.applied().await?;
        let Some(target) = min_position.filter(|p| *p > 0) else {
            return Ok(applied);
        };
        // The projector applies events in publishing order, so the target is
        // compared in that order. A position no event has was never handed
        // to anyone (a command answers after its commit): waiting is futile.
        let target = event_log::position_of(&self.pool, target)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::BadRequest(vec![FieldError::new(
                    "min_position",
                    "no event has this position",
                )])
            })?;
        if applied >= target {
            return Ok(applied);
        }
        let started = Instant::now();
        loop {
            // Registered before the checkpoint is read: an advance committed
            // in between still wakes this waiter instead of leaving it to
            // the next re-check.
            let notified = self.advanced.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let applied = self.applied().await?;
            if applied >= target {
                return Ok(applied);
            }
            let remaining = self.max_wait.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Err(ApiError::NotYetProjected {
                    position: target.global_position,
                    waited_ms: self.max_wait.as_millis(),
                });
            }
            let _ = tokio::time::timeout(remaining.min(RECHECK_EVERY), notified).await;
        }
    }
}

async fn listen(pool: PgPool, advanced: Arc<Notify>, shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        if let Err(error) = relay_notifications(&pool, &advanced, &shutdown).await {
            tracing::warn!(%error, "projection listener failed; reconnecting");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn relay_notifications(
    pool: &PgPool,
    advanced: &Notify,
    shutdown: &Shutdown,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen("projection_advanced").await?;
    loop {
        tokio::select! {
            notification = listener.recv() => {
                notification?;
                advanced.notify_waiters();
            }
            _ = shutdown.wait() => return Ok(()),
        }
    }
}
