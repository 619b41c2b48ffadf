//! `projector rebuild`: replays the event store into a new table, then swaps
//! it in. Queries keep answering from the old table until the swap, which
//! holds a lock only while it applies the events that arrived meanwhile.

use infra::event_log::{self, LogPosition};
use sqlx::{PgConnection, PgPool};

use crate::projection::{apply_to, USERS_CHECKPOINT, USERS_VIEW};
use crate::users_view::{ApplyError, LIVE_TABLE};

const NEXT_TABLE: &str = "users_view_next";
const OLD_TABLE: &str = "users_view_old";
const REPLAY_BATCH: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("unknown view {0:?}; known views: users_view")]
    UnknownView(String),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Summary of a finished rebuild.
#[derive(Debug)]
pub struct Rebuilt {
    pub view: &'static str,
    pub events: u64,
    pub up_to: LogPosition,
}

pub async fn rebuild(pool: &PgPool, view: Option<&str>) -> Result<Rebuilt, RebuildError> {
    match view.unwrap_or(USERS_VIEW) {
        USERS_VIEW => rebuild_users_view(pool).await,
        other => Err(RebuildError::UnknownView(other.to_string())),
    }
}

async fn rebuild_users_view(pool: &PgPool) -> Result<Rebuilt, RebuildError> {
    sqlx::query(&format!("DROP TABLE IF EXISTS {NEXT_TABLE}"))
        .execute(pool)
        .await?;
    sqlx::query(&format!(
        "CREATE TABLE {NEXT_TABLE} (LIKE {LIVE_TABLE} INCLUDING ALL)"
    ))
    .execute(pool)
    .await?;
    let mut conn = pool.acquire().await?;
    let (mut events, mut up_to) = replay(&mut conn, LogPosition::default()).await?;
    tracing::info!(
        events,
        "replayed the event store; swapping in the rebuilt table"
    );

    let mut tx = pool.begin().await?;
    sqlx::query(&format!("LOCK TABLE {LIVE_TABLE} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut *tx)
        .await?;
    let (caught_up, last) = replay(&mut tx, up_to).await?;
    events += caught_up;
    up_to = last;
    for statement in [
        format!("ALTER TABLE {LIVE_TABLE} RENAME TO {OLD_TABLE}"),
        format!("ALTER TABLE {NEXT_TABLE} RENAME TO {LIVE_TABLE}"),
        format!("DROP TABLE {OLD_TABLE}"),
    ] {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    restore_index_names(&mut tx).await?;
    USERS_CHECKPOINT.advance(&mut *tx, up_to).await?;
    tx.commit().await?;
    Ok(Rebuilt {
        view: USERS_VIEW,
        events,
        up_to,
    })
}

/// `LIKE ... INCLUDING ALL` named the copied indexes after the new table;
/// give them back the live table's names.
async fn restore_index_names(db: &mut PgConnection) -> sqlx::Result<()> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1",
    )
    .bind(LIVE_TABLE)
    .fetch_all(&mut *db)
    .await?;
    for name in names {
        if let Some(suffix) = name.strip_prefix(NEXT_TABLE) {
            let statement = format!("ALTER INDEX \"{name}\" RENAME TO \"{LIVE_TABLE}{suffix}\"");
            sqlx::query(&statement).execute(&mut *db).await?;
        }
    }
    Ok(())
}

/// Applies every committed event after `from` to the new table, in the order
/// the relay publishes; returns how many and where it stopped.
async fn replay(
    db: &mut PgConnection,
    from: LogPosition,
) -> Result<(u64, LogPosition), RebuildError> {
    let mut position = from;
    let mut count = 0;
    loop {
        let batch = event_log::read_committed_after(&mut *db, position, REPLAY_BATCH).await?;
        let Some(last) = batch.last() else {
            return Ok((count, position));
        };
        position = LogPosition::of(last);
        for envelope in &batch {
            apply_to(db, NEXT_TABLE, envelope).await?;
            count += 1;
        }
    }
}
