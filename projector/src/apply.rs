//! Applying one aggregate's event to its view exactly once, in sequence
//! order, whatever the broker delivers: duplicates are ignored, and an event
//! ahead of the view first has the missing ones loaded from the event store,
//! which is the truth; the broker carries news.

use bus::Envelope;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use crate::views::{Target, View};
use crate::{roles_view, sessions_view, users_view};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event {event_id} does not decode as a {aggregate_type} event: {source}")]
    Decode {
        event_id: Uuid,
        aggregate_type: String,
        source: serde_json::Error,
    },
    #[error("{aggregate_type} {id:?} is not a UUID")]
    BadId { aggregate_type: String, id: String },
    #[error("{aggregate_type} {id}: expected sequence {expected}, the event store has {found:?}")]
    MissingEvents {
        aggregate_type: String,
        id: Uuid,
        expected: i64,
        found: Option<i64>,
    },
    #[error("{aggregate_type} {id} changed under us; retry")]
    Raced { aggregate_type: String, id: Uuid },
}

/// Applies `envelope` to `view` unless it was applied already.
pub async fn apply(
    db: &mut PgConnection,
    view: View,
    target: Target,
    envelope: &Envelope,
) -> Result<(), ApplyError> {
    let id = Uuid::parse_str(&envelope.aggregate_id).map_err(|_| ApplyError::BadId {
        aggregate_type: envelope.aggregate_type.clone(),
        id: envelope.aggregate_id.clone(),
    })?;
    let last = last_sequence(db, view, target, id).await?;
    if envelope.sequence <= last {
        return Ok(());
    }
    let mut expected = last + 1;
    if envelope.sequence > expected {
        let missing = infra::event_log::read_stream(
            &mut *db,
            &envelope.aggregate_type,
            &envelope.aggregate_id,
            last,
            envelope.sequence - 1,
        )
        .await?;
        for event in &missing {
            check_next(event, id, expected, Some(event.sequence))?;
            apply_next(db, view, target, id, event).await?;
            expected += 1;
        }
    }
    check_next(envelope, id, expected, Some(envelope.sequence))?;
    apply_next(db, view, target, id, envelope).await
}

fn check_next(
    envelope: &Envelope,
    id: Uuid,
    expected: i64,
    found: Option<i64>,
) -> Result<(), ApplyError> {
    if found == Some(expected) {
        Ok(())
    } else {
        Err(ApplyError::MissingEvents {
            aggregate_type: envelope.aggregate_type.clone(),
            id,
            expected,
            found,
        })
    }
}

async fn last_sequence(
    db: &mut PgConnection,
    view: View,
    target: Target,
    id: Uuid,
) -> Result<i64, sqlx::Error> {
    let sql = format!(
        "SELECT sequence FROM {} WHERE {} = $1",
        target.table(view.name()),
        view.key_column()
    );
    let sequence: Option<i64> = sqlx::query_scalar(&sql).bind(id).fetch_optional(db).await?;
    Ok(sequence.unwrap_or(0))
}

/// Applies the event that directly follows the row's sequence. Every write
/// is guarded by that sequence, so a concurrent writer fails (and retries)
/// instead of applying the event twice.
async fn apply_next(
    db: &mut PgConnection,
    view: View,
    target: Target,
    id: Uuid,
    envelope: &Envelope,
) -> Result<(), ApplyError> {
    let applied = match view {
        View::Users => users_view::apply_next(db, target, id, envelope).await?,
        View::Roles => roles_view::apply_next(db, target, id, envelope).await?,
        View::Sessions => sessions_view::apply_next(db, target, id, envelope).await?,
    };
    if applied {
        Ok(())
    } else {
        Err(ApplyError::Raced {
            aggregate_type: envelope.aggregate_type.clone(),
            id,
        })
    }
}

/// The domain event an envelope carries.
pub(crate) fn decode<E: DeserializeOwned>(envelope: &Envelope) -> Result<E, ApplyError> {
    serde_json::from_value(envelope.payload.clone()).map_err(|source| ApplyError::Decode {
        event_id: envelope.event_id,
        aggregate_type: envelope.aggregate_type.clone(),
        source,
    })
}

pub(crate) fn occurred_at(envelope: &Envelope) -> DateTime<Utc> {
    envelope
        .metadata
        .occurred_at
        .unwrap_or(envelope.recorded_at)
}

/// `UPDATE table SET set, sequence = $2, global_position = $3` of the row
/// `key = $1` only if it is at the previous sequence; `set` uses `$4` on.
pub(crate) fn guarded_update_sql(table: &str, key: &str, set: &str) -> String {
    format!(
        "UPDATE {table} SET {set}, sequence = $2, global_position = $3 \
         WHERE {key} = $1 AND sequence = $2 - 1"
    )
}

/// Binds `$1` to `$3` of [`guarded_update_sql`].
pub(crate) fn guarded_update<'q>(
    sql: &'q str,
    id: Uuid,
    envelope: &Envelope,
) -> Query<'q, Postgres, PgArguments> {
    sqlx::query(sql)
        .bind(id)
        .bind(envelope.sequence)
        .bind(envelope.global_position)
}
