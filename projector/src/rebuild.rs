//! `projector rebuild [READ_MODEL]`: replays the event store into new tables,
//! then swaps them in; the read models are the views and the audit log. The
//! bulk of the log is folded in memory and copied ([`bulk`]); what arrives
//! meanwhile is applied an event at a time, as the live projector does.
//! Queries keep answering from the old tables until the swap, which holds a
//! lock only while it applies the events that arrived meanwhile.

use infra::event_log::{self, LogPosition};
use sqlx::{ConnectOptions, PgConnection, PgPool};

use crate::apply::{self, ApplyError};
use crate::bulk;
use crate::executor;
use crate::projection::{applied_prefix_end, exclude_writers, CHECKPOINT};
use crate::views::{AuditLogRow, ReadModel, Target, SESSIONS_VIEW};

const REPLAY_BATCH: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("unknown read model {0:?}; known read models: {known}", known = known_read_models())]
    UnknownReadModel(String),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// `users_view (with user_roles_view), roles_view, sessions_view, audit_log`.
fn known_read_models() -> String {
    let described: Vec<String> = ReadModel::all()
        .map(|model| match model.tables() {
            [name] => (*name).to_owned(),
            [name, others @ ..] => format!("{name} (with {})", others.join(", ")),
            [] => unreachable!("a read model has at least one table"),
        })
        .collect();
    described.join(", ")
}

/// Summary of a finished rebuild.
#[derive(Debug)]
pub struct Rebuilt {
    /// The rebuilt read models, by their first table's name.
    pub read_models: Vec<&'static str>,
    /// Events replayed into them (each once, whatever number it fed).
    pub events: u64,
    /// Where in the log the replay ended.
    pub up_to: LogPosition,
}

/// Rebuilds the read model named `name` (any of its tables' names), or all
/// of them.
pub async fn rebuild(pool: &PgPool, name: Option<&str>) -> Result<Rebuilt, RebuildError> {
    let models =
        match name {
            None => ReadModel::all().collect(),
            Some(name) => vec![ReadModel::parse(name)
                .ok_or_else(|| RebuildError::UnknownReadModel(name.into()))?],
        };
    let tables: Vec<&str> = models
        .iter()
        .flat_map(|model| model.tables())
        .copied()
        .collect();
    let mut deferred = Vec::new();
    for table in &tables {
        create_next_table(pool, table).await?;
        deferred.extend(drop_plain_indexes(pool, &Target::Rebuild.table(table)).await?);
    }
    let mut conn = pool.acquire().await?;
    // Outside the pool: the pass needs it only while it reads, and the
    // pool may be as small as the swap's two connections.
    let reader = pool.connect_options().connect().await?;
    let loaded = bulk::load(reader, &mut conn, &models).await?;
    for create in &deferred {
        sqlx::query(create).execute(&mut *conn).await?;
    }
    tracing::info!(
        events = loaded.events,
        "folded the event store and wrote the new tables; catching up"
    );
    // What arrived during the first pass, one event at a time and before
    // the lock, so that the swap's catch-up under it is short.
    let (later, up_to) = replay(&mut conn, &models, loaded.up_to).await?;
    let events = loaded.events + later;
    tracing::info!(
        events,
        "replayed the event store; swapping in the rebuilt tables"
    );
    let (caught_up, up_to) = swap_in(pool, &models, &tables, up_to).await?;
    Ok(Rebuilt {
        read_models: models.iter().map(|model| model.name()).collect(),
        events: events + caught_up,
        up_to,
    })
}

/// In one transaction that locks the live tables: applies what arrived
/// since the replay, swaps the tables and advances the checkpoint.
async fn swap_in(
    pool: &PgPool,
    models: &[ReadModel],
    tables: &[&str],
    replayed: LogPosition,
) -> Result<(u64, LogPosition), RebuildError> {
    let mut tx = pool.begin().await?;
    exclude_writers(&mut tx).await?;
    let lock = format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", tables.join(", "));
    sqlx::query(&lock).execute(&mut *tx).await?;
    let (caught_up, up_to) = replay(&mut tx, models, replayed).await?;
    if tables.contains(&SESSIONS_VIEW) {
        executor::erase_sessions_of_the_erased(&mut tx, Target::Rebuild).await?;
    }
    for table in tables {
        swap(&mut tx, table).await?;
    }
    // The read models not rebuilt may lag behind the replay: ask them all.
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

/// Drops the indexes of table `next` that back no constraint and returns
/// the statements that create them again, in their order: built once its
/// rows are in, an index costs a fraction of its upkeep row by row.
async fn drop_plain_indexes(pool: &PgPool, next: &str) -> sqlx::Result<Vec<String>> {
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT x.indexrelid::regclass::text, pg_get_indexdef(x.indexrelid) \
         FROM pg_index x \
         LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid \
         WHERE x.indrelid = $1::regclass AND c.oid IS NULL \
         ORDER BY x.indexrelid",
    )
    .bind(next)
    .fetch_all(pool)
    .await?;
    let mut creates = Vec::new();
    for (name, create) in indexes {
        sqlx::query(&format!("DROP INDEX {name}"))
            .execute(pool)
            .await?;
        creates.push(create);
    }
    Ok(creates)
}

async fn swap(db: &mut PgConnection, live: &str) -> sqlx::Result<()> {
    let next = Target::Rebuild.table(live);
    let renames = index_renames(db, live, &next).await?;
    let swap = [
        format!("ALTER TABLE {live} RENAME TO {live}_old"),
        format!("ALTER TABLE {next} RENAME TO {live}"),
        format!("DROP TABLE {live}_old"),
    ];
    for statement in swap.into_iter().chain(renames) {
        sqlx::query(&statement).execute(&mut *db).await?;
    }
    Ok(())
}

/// The `ALTER INDEX` statements giving each index of table `next` the name
/// of the index of `live` with the same definition, to run once `live` is
/// dropped. `LIKE ... INCLUDING ALL` names the copies after the new table
/// and their columns, truncated to 63 bytes, whatever the originals were
/// named; a later migration may drop an index by its name.
async fn index_renames(db: &mut PgConnection, live: &str, next: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(INDEX_RENAMES_SQL)
        .bind(live)
        .bind(next)
        .fetch_all(db)
        .await
}

/// Indexes of tables `$1` and `$2` are paired by their definition with both
/// names left out, plus the kind of constraint they back; identical ones
/// pair in creation order, the order `LIKE` copies them in.
const INDEX_RENAMES_SQL: &str = r#"
WITH shapes AS (
    SELECT x.indrelid AS table_oid,
           x.indexrelid AS index_oid,
           i.relname AS name,
           concat_ws(' ', c.contype, regexp_replace(
               pg_get_indexdef(x.indexrelid),
               '^CREATE (UNIQUE )?INDEX \S+ ON (ONLY )?\S+ ',
               'CREATE \1INDEX ON \2')) AS shape
    FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid
    LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
    WHERE x.indrelid IN ($1::regclass, $2::regclass)
), numbered AS (
    SELECT *, row_number() OVER (PARTITION BY table_oid, shape ORDER BY index_oid) AS nth
    FROM shapes
)
SELECT format('ALTER INDEX %s RENAME TO %I', new_index.index_oid::regclass, old_index.name)
FROM numbered new_index
JOIN numbered old_index ON old_index.shape = new_index.shape AND old_index.nth = new_index.nth
WHERE new_index.table_oid = $2::regclass AND old_index.table_oid = $1::regclass
  AND new_index.name <> old_index.name
ORDER BY new_index.index_oid
"#;

/// Applies every committed event after `from` to the new tables of the
/// read models it feeds, in the order the relay publishes; returns how many
/// events fed one and where it stopped.
async fn replay(
    db: &mut PgConnection,
    models: &[ReadModel],
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
        // One transaction per batch (a savepoint inside the swap's): one
        // commit, not one per row written.
        let mut tx = sqlx::Connection::begin(&mut *db).await?;
        for envelope in &batch {
            let fed: Vec<ReadModel> = models
                .iter()
                .copied()
                .filter(|model| model.is_fed_by(&envelope.aggregate_type))
                .collect();
            count += u64::from(!fed.is_empty());
            for model in fed {
                replay_into(&mut tx, model, envelope).await?;
            }
        }
        tx.commit().await?;
    }
}

/// Writes one event into a read model's new tables. A view may load earlier
/// events here too; the audit log records those as the replay reaches them.
async fn replay_into(
    db: &mut PgConnection,
    model: ReadModel,
    envelope: &bus::Envelope,
) -> Result<(), ApplyError> {
    match model {
        ReadModel::View(view) => {
            apply::apply(db, view, Target::Rebuild, envelope).await?;
        }
        ReadModel::AuditLog => {
            executor::record(db, Target::Rebuild, &AuditLogRow::of(envelope)).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::{AUDIT_LOG, ROLES_VIEW, SESSIONS_VIEW, USERS_VIEW, USER_ROLES_VIEW};

    #[test]
    fn an_unknown_read_model_is_answered_with_every_known_one() {
        let error = RebuildError::UnknownReadModel("nope".into());
        assert_eq!(
            error.to_string(),
            format!(
                "unknown read model \"nope\"; known read models: \
                 {USERS_VIEW} (with {USER_ROLES_VIEW}), {ROLES_VIEW}, {SESSIONS_VIEW}, {AUDIT_LOG}"
            )
        );
    }
}
