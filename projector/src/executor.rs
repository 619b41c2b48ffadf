//! The one writer of every read model: reads an aggregate's row, and writes
//! what a reducer made of it, guarded by the row's sequence so that a
//! concurrent writer fails (and retries) instead of applying an event twice;
//! and records events in the audit log, once per global position.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use crate::views::user_roles::{Membership, UserRoleRow};
use crate::views::{
    AuditLogRow, Change, Column, Target, Value, ViewChange, ViewRow, AUDIT_LOG, SESSIONS_VIEW,
    USER_ROLES_VIEW,
};
use domain::ERASED;

/// The row of aggregate `id`, if the view has one.
pub async fn load<R: ViewRow>(
    db: &mut PgConnection,
    target: Target,
    id: Uuid,
) -> sqlx::Result<Option<R>> {
    let sql = format!(
        "SELECT * FROM {} WHERE {} = $1",
        target.table(R::VIEW.name()),
        R::VIEW.key_column()
    );
    sqlx::query_as(&sql).bind(id).fetch_optional(db).await
}

/// The rows of the aggregates `ids` that the view has.
pub async fn load_many<R: ViewRow>(
    db: &mut PgConnection,
    target: Target,
    ids: &[Uuid],
) -> sqlx::Result<Vec<R>> {
    let sql = format!(
        "SELECT * FROM {} WHERE {} = ANY($1)",
        target.table(R::VIEW.name()),
        R::VIEW.key_column()
    );
    sqlx::query_as(&sql).bind(ids).fetch_all(db).await
}

/// Writes `change`; false if another writer got there first: the row to
/// insert exists, or the row to update is no longer at the sequence before.
/// Dependent rows (`user_roles_view`) are written only with the row.
pub async fn write<C: ViewChange>(
    db: &mut PgConnection,
    target: Target,
    change: &C,
) -> sqlx::Result<bool> {
    // Under the person's lock (infra::erased): an erasure committing now
    // waits for this transaction, so its own scrub sees this row; one that
    // committed first is seen here. Either way the row keeps nothing of an
    // erased person, even when their session's events arrive after
    // `user.erased`.
    let erased_change;
    let row_change = match change.row().row().person() {
        Some(person) if infra::erased::is_erased_locked(db, person).await? => {
            erased_change = change.row().erased();
            &erased_change
        }
        _ => change.row(),
    };
    let written = match row_change {
        Change::Insert(row) => insert(db, target, row).await?,
        Change::Update(row) => update(db, target, row).await?,
    };
    if let Some(membership) = change.membership().filter(|_| written) {
        write_membership(db, target, membership).await?;
    }
    // A rebuild replays the event store, where the sessions' values are
    // erased already; its tables of sessions may not even exist.
    if let Some(user_id) = change.erased_sessions().filter(|_| written) {
        if target == Target::Live {
            erase_sessions(db, user_id).await?;
        }
    }
    Ok(written)
}

/// A session's client address and user agent become the marker `$1` (an
/// absent one stays absent, as in the scrubbed events).
const ERASE_SESSION: &str = "ip = CASE WHEN ip IS NULL THEN NULL ELSE $1 END, \
     user_agent = CASE WHEN user_agent IS NULL THEN NULL ELSE $1 END";

/// The user's sessions keep nothing of them.
pub async fn erase_sessions(db: &mut PgConnection, user_id: Uuid) -> sqlx::Result<()> {
    let sql = format!("UPDATE {SESSIONS_VIEW} SET {ERASE_SESSION} WHERE user_id = $2");
    sqlx::query(&sql)
        .bind(ERASED)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(())
}

/// The sessions of everyone erased keep nothing of them in `target`'s
/// table: a rebuild's, once it holds the lock that an erasure's write to
/// the live table waits for, so that an erasure committed during its
/// replay reaches the rows it had replayed before.
pub async fn erase_sessions_of_the_erased(
    db: &mut PgConnection,
    target: Target,
) -> sqlx::Result<()> {
    let sql = format!(
        "UPDATE {} SET {ERASE_SESSION} \
         WHERE user_id::text IN (SELECT user_id FROM erased_users) \
           AND (ip <> $1 OR user_agent <> $1)",
        target.table(SESSIONS_VIEW)
    );
    sqlx::query(&sql).bind(ERASED).execute(db).await?;
    Ok(())
}

/// Inserts `row` into the audit log unless the event is there already.
pub async fn record(db: &mut PgConnection, target: Target, row: &AuditLogRow) -> sqlx::Result<()> {
    let columns = row.columns();
    let sql = insert_if_absent_sql(&target.table(AUDIT_LOG), &columns, AuditLogRow::KEY);
    bind_all(sqlx::query(&sql), &columns).execute(db).await?;
    Ok(())
}

async fn insert<R: ViewRow>(db: &mut PgConnection, target: Target, row: &R) -> sqlx::Result<bool> {
    let columns = row.columns();
    let table = target.table(R::VIEW.name());
    let sql = insert_if_absent_sql(&table, &columns, &[R::VIEW.key_column()]);
    let inserted = bind_all(sqlx::query(&sql), &columns).execute(db).await?;
    Ok(inserted.rows_affected() == 1)
}

/// Replaces the row's values only if it is at the sequence before `row`'s:
/// an aggregate's events are applied one after the other.
async fn update<R: ViewRow>(db: &mut PgConnection, target: Target, row: &R) -> sqlx::Result<bool> {
    let key = R::VIEW.key_column();
    let values: Vec<Column> = row
        .columns()
        .into_iter()
        .filter(|column| column.name != key)
        .collect();
    let assignments: Vec<String> = values
        .iter()
        .zip(3..)
        .map(|(column, parameter)| format!("{} = ${parameter}", column.name))
        .collect();
    let sql = format!(
        "UPDATE {} SET {} WHERE {key} = $1 AND sequence = $2",
        target.table(R::VIEW.name()),
        assignments.join(", ")
    );
    let query = sqlx::query(&sql).bind(row.key()).bind(row.sequence() - 1);
    let updated = bind_all(query, &values).execute(db).await?;
    Ok(updated.rows_affected() == 1)
}

async fn write_membership(
    db: &mut PgConnection,
    target: Target,
    membership: &Membership,
) -> sqlx::Result<()> {
    let table = target.table(USER_ROLES_VIEW);
    match membership {
        Membership::Assigned(row) => {
            let columns = row.columns();
            let sql = insert_if_absent_sql(&table, &columns, UserRoleRow::KEY);
            bind_all(sqlx::query(&sql), &columns).execute(db).await?;
        }
        Membership::Unassigned { user_id, role_id } => {
            let sql = format!("DELETE FROM {table} WHERE user_id = $1 AND role_id = $2");
            sqlx::query(&sql)
                .bind(user_id)
                .bind(role_id)
                .execute(db)
                .await?;
        }
    }
    Ok(())
}

/// `INSERT` of `columns` as `$1...`, doing nothing if a row with the same
/// `key` exists.
fn insert_if_absent_sql(table: &str, columns: &[Column], key: &[&str]) -> String {
    let names: Vec<&str> = columns.iter().map(|column| column.name).collect();
    let parameters: Vec<String> = (1..=columns.len()).map(|n| format!("${n}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING",
        names.join(", "),
        parameters.join(", "),
        key.join(", ")
    )
}

/// Binds the columns' values, in order, to the next parameters.
fn bind_all<'q>(
    query: Query<'q, Postgres, PgArguments>,
    columns: &[Column<'q>],
) -> Query<'q, Postgres, PgArguments> {
    columns
        .iter()
        .fold(query, |query, column| match column.value {
            Value::Uuid(value) => query.bind(value),
            Value::Text(value) => query.bind(value),
            Value::OptionalText(value) => query.bind(value),
            Value::BigInt(value) => query.bind(value),
            Value::Time(value) => query.bind(value),
            Value::OptionalTime(value) => query.bind(value),
            Value::TextArray(value) => query.bind(value),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_names_every_column_and_numbers_its_parameters_in_order() {
        let columns = [
            Column::new("user_id", Value::Uuid(Uuid::nil())),
            Column::new("role_id", Value::Uuid(Uuid::nil())),
            Column::new("assigned_at", Value::OptionalTime(None)),
        ];
        assert_eq!(
            insert_if_absent_sql("t", &columns, UserRoleRow::KEY),
            "INSERT INTO t (user_id, role_id, assigned_at) \
             VALUES ($1, $2, $3) ON CONFLICT (user_id, role_id) DO NOTHING"
        );
    }
}
