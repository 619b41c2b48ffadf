//! `projector rebuild [VIEW]`: replays the event store into new tables, then
//! swaps them in. Queries keep answering from the old tables until the swap,
//! which holds a lock only while it applies the events that arrived meanwhile.

use infra::event_log::{self, LogPosition};
use sqlx::{PgConnection, PgPool};

use crate::apply::{self, ApplyError};
use crate::projection::{applied_prefix_end, exclude_writers, CHECKPOINT};
use crate::views::{Target, View};

const REPLAY_BATCH: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("unknown view {0:?}; known views: {known}", known = known_views())]
    UnknownView(String),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// `users_view (with user_roles_view), roles_view, sessions_view`.
fn known_views() -> String {
    let described: Vec<String> = View::ALL
        .iter()
        .map(|view| match view.tables() {
            [name] => (*name).to_owned(),
            [name, others @ ..] => format!("{name} (with {})", others.join(", ")),
            [] => unreachable!("a view has at least one table"),
        })
        .collect();
    described.join(", ")
}

/// Summary of a finished rebuild.
#[derive(Debug)]
pub struct Rebuilt {
    /// The rebuilt views, by their first table's name.
    pub views: Vec<&'static str>,
    /// Events applied to them.
    pub events: u64,
    /// Where in the log the replay ended.
    pub up_to: LogPosition,
}

/// Rebuilds the view named `view` (any of its tables' names), or all of them.
pub async fn rebuild(pool: &PgPool, view: Option<&str>) -> Result<Rebuilt, RebuildError> {
    let views = match view {
        None => View::ALL.to_vec(),
        Some(name) => {
            vec![View::parse(name).ok_or_else(|| RebuildError::UnknownView(name.into()))?]
        }
    };
    let tables: Vec<&str> = views
        .iter()
        .flat_map(|view| view.tables())
        .copied()
        .collect();
    for table in &tables {
        create_next_table(pool, table).await?;
    }
    let mut conn = pool.acquire().await?;
    let (events, up_to) = replay(&mut conn, &views, LogPosition::default()).await?;
    tracing::info!(
        events,
        "replayed the event store; swapping in the rebuilt tables"
    );
    let (caught_up, up_to) = swap_in(pool, &views, &tables, up_to).await?;
    Ok(Rebuilt {
        views: views.iter().map(|view| view.name()).collect(),
        events: events + caught_up,
        up_to,
    })
}

/// In one transaction that locks the live tables: applies what arrived
/// since the replay, swaps the tables and advances the checkpoint.
async fn swap_in(
    pool: &PgPool,
    views: &[View],
    tables: &[&str],
    replayed: LogPosition,
) -> Result<(u64, LogPosition), RebuildError> {
    let mut tx = pool.begin().await?;
    exclude_writers(&mut tx).await?;
    let lock = format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", tables.join(", "));
    sqlx::query(&lock).execute(&mut *tx).await?;
    let (caught_up, up_to) = replay(&mut tx, views, replayed).await?;
    for table in tables {
        swap(&mut tx, table).await?;
    }
    // The views not rebuilt may lag behind the replay: ask them all.
    let applied = applied_prefix_end(&mut tx).await?;
    CHECKPOINT.advance(&mut *tx, applied).await?;
    tx.commit().await?;
    Ok((caught_up, up_to))
}

async fn create_next_table(pool: &PgPool, live: &str) -> sqlx::Result<()> {
    let next = Target::Rebuild.table(live);
    sqlx::query(&format!("DROP TABLE IF EXISTS {next}"))
        .execute(pool)
        .await?;
    sqlx::query(&format!("CREATE TABLE {next} (LIKE {live} INCLUDING ALL)"))
        .execute(pool)
        .await?;
    Ok(())
}

async fn swap(db: &mut PgConnection, live: &str) -> sqlx::Result<()> {
    let next = Target::Rebuild.table(live);
    for statement in [
        format!("ALTER TABLE {live} RENAME TO {live}_old"),
        format!("ALTER TABLE {next} RENAME TO {live}"),
        format!("DROP TABLE {live}_old"),
    ] {
        sqlx::query(&statement).execute(&mut *db).await?;
    }
    restore_index_names(db, live).await
}

/// `LIKE ... INCLUDING ALL` named the copied indexes after the new table;
/// give them back the live table's names.
async fn restore_index_names(db: &mut PgConnection, live: &str) -> sqlx::Result<()> {
    let next = Target::Rebuild.table(live);
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1",
    )
    .bind(live)
    .fetch_all(&mut *db)
    .await?;
    for name in names {
        if let Some(suffix) = name.strip_prefix(next.as_str()) {
            let statement = format!("ALTER INDEX \"{name}\" RENAME TO \"{live}{suffix}\"");
            sqlx::query(&statement).execute(&mut *db).await?;
        }
    }
    Ok(())
}

/// Applies every committed event after `from` of `views` to their new
/// tables, in the order the relay publishes; returns how many and where it
/// stopped.
async fn replay(
    db: &mut PgConnection,
    views: &[View],
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
            let view = View::of_aggregate(&envelope.aggregate_type);
            if let Some(view) = view.filter(|view| views.contains(view)) {
                apply::apply(db, view, Target::Rebuild, envelope).await?;
                count += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::{ROLES_VIEW, SESSIONS_VIEW, USERS_VIEW, USER_ROLES_VIEW};

    #[test]
    fn an_unknown_view_is_answered_with_every_known_one() {
        let error = RebuildError::UnknownView("nope".into());
        assert_eq!(
            error.to_string(),
            format!(
                "unknown view \"nope\"; known views: \
                 {USERS_VIEW} (with {USER_ROLES_VIEW}), {ROLES_VIEW}, {SESSIONS_VIEW}"
            )
        );
    }
}
