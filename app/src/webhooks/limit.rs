//! `WEBHOOKS_MAX`, held against concurrent registrations on any number of
//! api processes: a registration counts the live webhooks and appends its
//! event under one advisory lock, so the last place goes to one of them.

use std::future::Future;
use std::sync::Arc;

use domain::webhook::WebhookLimit;
use infra::webhooks::Subscriptions;
use sqlx::PgPool;

use crate::AppError;

/// Key of the advisory lock that serializes registrations.
const REGISTRATION_LOCK: i64 = 0x7765_6268_6f6f_6b73; // "webhooks"

pub(super) struct Places {
    pool: PgPool,
    limit: WebhookLimit,
    /// Registrations of this process take turns here first, so that at
    /// most one of them holds a pooled connection while it waits for the
    /// advisory lock (waiters holding connections would starve the holder).
    in_process: Arc<tokio::sync::Mutex<()>>,
}

impl Places {
    pub(super) fn new(pool: PgPool, limit: WebhookLimit) -> Self {
        Self {
            pool,
            limit,
            in_process: Arc::default(),
        }
    }

    /// Runs `register` unless `WEBHOOKS_MAX` webhooks exist (then
    /// [`AppError::WebhookLimitReached`], before anything is written). The
    /// count, from the event store, and the registration's append happen
    /// under one lock shared by every process; dropping the request rolls
    /// the lock's transaction back, which releases it.
    pub(super) async fn while_admitted<T, Fut>(
        &self,
        register: impl FnOnce() -> Fut,
    ) -> Result<T, AppError>
    where
        Fut: Future<Output = Result<T, AppError>>,
    {
        let _turn = self.in_process.lock().await;
        let mut lock = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(REGISTRATION_LOCK)
            .execute(&mut *lock)
            .await?;
        // A statement after the lock: it sees every registration that
        // committed before the lock was released to us.
        let live = Subscriptions::load(&mut *lock).await?.live().count();
        self.limit.admits_another(live)?;
        let result = register().await;
        // The lock has done its work: a failure to release it here (the
        // transaction then ends with its connection) must not turn a
        // registration that was appended, its secret shown nowhere else,
        // into an error.
        if let Err(error) = lock.commit().await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "releasing the webhook registration lock"
            );
        }
        result
    }
}
