//! Stored events as the verifiers read them: every column as PostgreSQL
//! stores it (the JSON columns as their text, `salts` as jsonb's text),
//! borrowed from the row that holds it, each JSON document parsed once. A
//! row is read by column index: the names would cost a lookup per column
//! per event.

use infra::event_log::LogPosition;
use infra::integrity::{HashedEventRef, Json};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::check::SealedRecord;
use super::report::Broken;

/// The columns [`StoredRow::read`] reads, in its order, from `events`
/// aliased `e`.
pub(super) const ROW_COLUMNS: &str =
    "e.hash_version, e.sequence, e.transaction_id::text::bigint, e.global_position, \
     e.recorded_at, e.event_id::text, e.aggregate_type, e.aggregate_id, e.event_type, \
     e.event_version, e.payload::text, e.metadata::text, e.sealed::text, e.salts::text, \
     e.prev_hash, e.hash";
/// How many columns [`ROW_COLUMNS`] names: a query's further columns
/// start at this index.
pub(super) const ROW_WIDTH: usize = 16;

/// One stored event, borrowed from its row.
pub(super) struct StoredRow<'r> {
    pub(super) event: HashedEventRef<'r>,
    pub(super) position: LogPosition,
    payload: &'r str,
    metadata: &'r str,
    salts: &'r str,
}

impl<'r> StoredRow<'r> {
    /// The first [`ROW_WIDTH`] columns of `row`.
    pub(super) fn read(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            event: HashedEventRef {
                hash_version: row.try_get(0)?,
                sequence: row.try_get(1)?,
                recorded_at: row.try_get(4)?,
                event_id: row.try_get(5)?,
                aggregate_type: row.try_get(6)?,
                aggregate_id: row.try_get(7)?,
                event_type: row.try_get(8)?,
                event_version: row.try_get(9)?,
                sealed: row.try_get(12)?,
                prev_hash: row.try_get(14)?,
                hash: row.try_get(15)?,
            },
            position: LogPosition {
                transaction_id: row.try_get(2)?,
                global_position: row.try_get(3)?,
            },
            payload: row.try_get(10)?,
            metadata: row.try_get(11)?,
            salts: row.try_get(13)?,
        })
    }

    /// Where `row` stands in publishing order, without reading the rest.
    pub(super) fn position(row: &PgRow) -> sqlx::Result<LogPosition> {
        Ok(LogPosition {
            transaction_id: row.try_get(2)?,
            global_position: row.try_get(3)?,
        })
    }

    /// Where `row` stands in its stream: `(aggregate_type, aggregate_id, sequence)`.
    pub(super) fn stream_key(row: &PgRow) -> sqlx::Result<(String, String, i64)> {
        Ok((row.try_get(6)?, row.try_get(7)?, row.try_get(1)?))
    }

    /// The event with its JSON parsed; a column that is not JSON breaks
    /// its seal.
    pub(super) fn record(&self) -> Result<SealedRecord<'r>, Broken> {
        let mut record = SealedRecord {
            event: self.event,
            position: self.position,
            visible: Json::Null,
            salts: Json::Null,
        };
        let parse = |text: &'r str, what: &str| {
            Json::parse(text).map_err(|_| record.not_json(&format!("the {what} is not JSON")))
        };
        let visible = Json::payload_and_metadata(
            parse(self.payload, "payload")?,
            parse(self.metadata, "metadata")?,
        );
        let salts = parse(self.salts, "salts")?;
        record.visible = visible;
        record.salts = salts;
        Ok(record)
    }
}
