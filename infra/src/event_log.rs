//! Reads of the event store shared by the relay, the projector's gap filling
//! and rebuilds. Rows come back as the broker's `Envelope`, so every consumer
//! of events, live or replayed, sees one type.

use std::collections::HashMap;

use bus::{Envelope, EventMetadata};
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

/// A place in the log in the order it is published: transactions are read
/// in the order of their ids once no older transaction can still commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    pub transaction_id: i64,
    pub global_position: i64,
}

impl LogPosition {
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            transaction_id: envelope.transaction_id,
            global_position: envelope.global_position,
        }
    }
}

/// Below this, in the statement's snapshot, every event is committed and no
/// transaction can still add one (migration `event_log_horizon`): readers in
/// publishing order take only `transaction_id < HORIZON`. A sub-select, so
/// a statement computes it once.
pub const HORIZON: &str = "(SELECT event_log_horizon(pg_current_snapshot()))";

/// The channel a writer notifies once its events are committed, and the
/// relay listens on.
pub const EVENTS_APPENDED_CHANNEL: &str = "events_appended";

const COLUMNS: &str = "event_id, global_position, transaction_id::text::bigint AS transaction_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at";

/// The columns an [`EventRow`] reads, each qualified with `alias`, for
/// queries that join `events` to another table.
pub fn columns_of(alias: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|column| format!("{alias}.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One row of `events` as read by [`COLUMNS`]; becomes an [`Envelope`].
#[derive(FromRow)]
pub struct EventRow {
    event_id: Uuid,
    global_position: i64,
    transaction_id: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: serde_json::Value,
    metadata: serde_json::Value,
    recorded_at: DateTime<Utc>,
}

impl EventRow {
    pub fn transaction_id(&self) -> i64 {
        self.transaction_id
    }

    /// The metadata object as stored.
    pub fn metadata_json(&self) -> &serde_json::Value {
        &self.metadata
    }
}

impl From<EventRow> for Envelope {
    fn from(row: EventRow) -> Self {
        let metadata: HashMap<String, String> =
            serde_json::from_value(row.metadata).unwrap_or_default();
        Envelope {
            event_id: row.event_id,
            global_position: row.global_position,
            transaction_id: row.transaction_id,
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence,
            event_type: row.event_type,
            event_version: row.event_version,
            payload: row.payload,
            metadata: EventMetadata::from_map(&metadata),
            recorded_at: row.recorded_at,
        }
    }
}

/// The domain event an envelope carries, upcast to the current version: every
/// reader of events, live or replayed, decodes through here.
pub fn decode<E: domain::ContractEvent>(envelope: &Envelope) -> Result<E, domain::DecodeError> {
    domain::decode(
        &envelope.event_type,
        &envelope.event_version,
        envelope.payload.clone(),
    )
}

/// Events after `after` in publishing order, only from below the [`HORIZON`]
/// (transactions older than every one of this database still running): the
/// log can no longer gain a row below what is returned, so a reader that
/// checkpoints the last row never skips one.
pub async fn read_committed_after(
    db: impl PgExecutor<'_>,
    after: LogPosition,
    limit: i64,
) -> Result<Vec<Envelope>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events \
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
           AND transaction_id < {HORIZON} \
         ORDER BY events.transaction_id, events.global_position LIMIT $3"
    );
    let rows: Vec<EventRow> = sqlx::query_as(&sql)
        .bind(after.transaction_id)
        .bind(after.global_position)
        .bind(limit)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Envelope::from).collect())
}

/// Whether rows after `after` exist that `read_committed_after` held back
/// because an older transaction of this database is still running.
pub async fn has_rows_held_back(
    db: impl PgExecutor<'_>,
    after: LogPosition,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events \
          WHERE (transaction_id, global_position) > ($1::text::xid8, $2))",
    )
    .bind(after.transaction_id)
    .bind(after.global_position)
    .fetch_one(db)
    .await
}

/// The global position of one stream's last event, if it has any.
pub async fn stream_head(
    db: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT global_position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
         ORDER BY sequence DESC LIMIT 1",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_optional(db)
    .await
}

/// One aggregate's events with `after_sequence < sequence <= up_to_sequence`.
pub async fn read_stream(
    db: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
    after_sequence: i64,
    up_to_sequence: i64,
) -> Result<Vec<Envelope>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 AND sequence <= $4 \
         ORDER BY sequence"
    );
    let rows: Vec<EventRow> = sqlx::query_as(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence)
        .bind(up_to_sequence)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Envelope::from).collect())
}

/// Up to `limit` events of one stream from `from_sequence` on (that one
/// included), in sequence order: one page of a stream, in one bounded query.
pub async fn read_stream_page(
    db: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
    from_sequence: i64,
    limit: i64,
) -> Result<Vec<Envelope>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= $3 \
         ORDER BY sequence LIMIT $4"
    );
    let rows: Vec<EventRow> = sqlx::query_as(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(from_sequence)
        .bind(limit)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Envelope::from).collect())
}

/// The hashes of up to `limit` events after `after`, up to and including
/// `up_to`, in publishing order: what the relay folds into the log's running
/// hash and what verification folds again.
pub async fn hashes_between(
    db: impl PgExecutor<'_>,
    after: LogPosition,
    up_to: LogPosition,
    limit: i64,
) -> Result<Vec<(LogPosition, String)>, sqlx::Error> {
    let rows: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position, hash FROM events \
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
           AND (transaction_id, global_position) <= ($3::text::xid8, $4) \
         ORDER BY events.transaction_id, events.global_position LIMIT $5",
    )
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(up_to.transaction_id)
    .bind(up_to.global_position)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(transaction_id, global_position, hash)| {
            let position = LogPosition {
                transaction_id,
                global_position,
            };
            (position, hash)
        })
        .collect())
}

/// Where the event at `global_position` stands in publishing order.
pub async fn position_of(
    db: impl PgExecutor<'_>,
    global_position: i64,
) -> Result<Option<LogPosition>, sqlx::Error> {
    let transaction_id: Option<i64> = sqlx::query_scalar(
        "SELECT transaction_id::text::bigint FROM events WHERE global_position = $1",
    )
    .bind(global_position)
    .fetch_optional(db)
    .await?;
    Ok(transaction_id.map(|transaction_id| LogPosition {
        transaction_id,
        global_position,
    }))
}
