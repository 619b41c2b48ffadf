//! The log's running hash: every event's hash folded in publishing order up
//! to where the relay has published, and at intervals a checkpoint of it
//! signed with the audit key. Folding is idempotent (it resumes from the
//! stored head under a row lock), so a republished batch or a second relay
//! never folds an event twice.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use ed25519_dalek::SigningKey;
use infra::event_log::{self, LogPosition};
use infra::integrity::{key_id, running_hash, Checkpoint};
use sqlx::{PgConnection, PgPool};

/// Events read per query while folding.
const FOLD_PAGE: i64 = 1000;

/// When the relay signs a checkpoint.
#[derive(Clone, Debug)]
pub struct SealSettings {
    pub key: Arc<SigningKey>,
    /// After this many events since the last checkpoint.
    pub every_events: i64,
    /// Or after this long, if any event came since the last checkpoint.
    pub every: Duration,
}

/// The fold so far (`audit_chain_head`).
#[derive(Debug, sqlx::FromRow)]
struct Head {
    transaction_id: i64,
    global_position: i64,
    running_hash: String,
    event_count: i64,
}

impl Head {
    fn position(&self) -> LogPosition {
        LogPosition {
            transaction_id: self.transaction_id,
            global_position: self.global_position,
        }
    }
}

/// The last checkpoint written: how many events it covered and when.
#[derive(Debug, Default)]
struct LastCheckpoint {
    event_count: i64,
    created_at: Option<DateTime<Utc>>,
}

pub struct LogSealer {
    pool: PgPool,
    settings: SealSettings,
}

impl LogSealer {
    pub fn new(pool: PgPool, settings: SealSettings) -> Self {
        Self { pool, settings }
    }

    /// Lists the key's public half, so verifiers can find it by id.
    pub async fn register_key(&self) -> sqlx::Result<()> {
        let public = self.settings.key.verifying_key();
        sqlx::query(
            "INSERT INTO audit_signing_keys (key_id, public_key) VALUES ($1, $2) \
             ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(key_id(&public))
        .bind(STANDARD.encode(public.as_bytes()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Folds every event up to `published` not folded yet, and signs a
    /// checkpoint when one is due. One transaction per page of events, so
    /// a long backlog holds no transaction open (transaction ids are
    /// cluster-wide: a long one would hold back every reader of the log).
    pub async fn advance_to(&self, published: LogPosition) -> sqlx::Result<()> {
        while self.fold_page(published).await? {}
        Ok(())
    }

    /// Folds the next page; true while more may follow.
    async fn fold_page(&self, published: LogPosition) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let mut head: Head = sqlx::query_as(
            "SELECT transaction_id, global_position, running_hash, event_count \
             FROM audit_chain_head FOR UPDATE",
        )
        .fetch_one(&mut *tx)
        .await?;
        let mut last = last_checkpoint(&mut tx).await?;
        let page = if head.position() < published {
            event_log::hashes_between(&mut *tx, head.position(), published, FOLD_PAGE).await?
        } else {
            Vec::new()
        };
        for (position, hash) in &page {
            head.running_hash = running_hash(&head.running_hash, hash, *position);
            head.event_count += 1;
            head.transaction_id = position.transaction_id;
            head.global_position = position.global_position;
            if head.event_count - last.event_count >= self.settings.every_events {
                last = self.write_checkpoint(&mut tx, &head).await?;
            }
        }
        let more = page.len() as i64 == FOLD_PAGE;
        if !more && head.event_count > last.event_count && self.time_is_up(&last) {
            self.write_checkpoint(&mut tx, &head).await?;
        }
        if !page.is_empty() {
            sqlx::query(
                "UPDATE audit_chain_head SET transaction_id = $1, global_position = $2, \
                 running_hash = $3, event_count = $4, updated_at = now()",
            )
            .bind(head.transaction_id)
            .bind(head.global_position)
            .bind(&head.running_hash)
            .bind(head.event_count)
            .execute(&mut *tx)
            .await?;
            metrics::gauge!(crate::metrics::CHAIN_EVENTS).set(head.event_count as f64);
        }
        tx.commit().await?;
        Ok(more)
    }

    fn time_is_up(&self, last: &LastCheckpoint) -> bool {
        let every = TimeDelta::from_std(self.settings.every).unwrap_or(TimeDelta::MAX);
        last.created_at.is_none_or(|at| Utc::now() - at >= every)
    }

    async fn write_checkpoint(
        &self,
        db: &mut PgConnection,
        head: &Head,
    ) -> sqlx::Result<LastCheckpoint> {
        // PostgreSQL keeps microseconds: sign what will be read back.
        let created_at = Utc::now()
            .duration_trunc(TimeDelta::microseconds(1))
            .expect("a microsecond divides any time");
        let checkpoint = Checkpoint::sign(
            &self.settings.key,
            (head.transaction_id, head.global_position),
            head.running_hash.clone(),
            head.event_count,
            created_at,
        );
        sqlx::query(
            "INSERT INTO audit_checkpoints (transaction_id, global_position, running_hash, \
             event_count, created_at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(checkpoint.transaction_id)
        .bind(checkpoint.global_position)
        .bind(&checkpoint.running_hash)
        .bind(checkpoint.event_count)
        .bind(checkpoint.created_at)
        .bind(&checkpoint.key_id)
        .bind(&checkpoint.signature)
        .execute(db)
        .await?;
        metrics::counter!(crate::metrics::CHECKPOINTS_WRITTEN).increment(1);
        Ok(LastCheckpoint {
            event_count: head.event_count,
            created_at: Some(created_at),
        })
    }
}

async fn last_checkpoint(db: &mut PgConnection) -> sqlx::Result<LastCheckpoint> {
    let row: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT event_count, created_at FROM audit_checkpoints \
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_optional(db)
    .await?;
    Ok(
        row.map_or_else(LastCheckpoint::default, |(event_count, created_at)| {
            LastCheckpoint {
                event_count,
                created_at: Some(created_at),
            }
        }),
    )
}
