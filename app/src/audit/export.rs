//! An export of the log straight from the event store, page by page in
//! publishing order: each page is its own short query (no transaction held
//! for the whole download) and memory holds one page whatever the size.
//! Every event carries what proves it (its hash, the hash before it, its
//! sealed form and the salts of what it shows), and an export of the whole
//! log carries the signed checkpoints, so that it verifies on its own.

use chrono::{DateTime, Utc};
use infra::event_log::{self, EventRow, LogPosition, HORIZON};
use infra::integrity::{stored_checkpoints, withhold_salts, Checkpoint};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{PgPool, QueryBuilder};

use super::cursor::Order;
use super::filter::AuditFilter;
use super::sql::{self, Source};
use super::{audited, AuditQueries, AuditedEvent};
use crate::AppError;

/// Events read from the event store per query.
pub const EXPORT_PAGE: i64 = 1000;
/// Names the format of an export's lines; bumped when they change.
pub const EXPORT_FORMAT: &str = "identity-audit-export/2";

/// An export's first line: what it holds and up to where.
#[derive(Debug, Clone, Serialize)]
pub struct ExportHeader {
    pub format: &'static str,
    pub generated_at: DateTime<Utc>,
    /// The newest event committed when the export began; nothing after it is included.
    pub newest_global_position: i64,
    pub newest_transaction_id: i64,
    pub filters: AuditFilter,
}

/// What proves one exported event.
#[derive(Debug, Clone, Serialize)]
pub struct EventIntegrity {
    /// Which fields `hash` covers (1: all but the event's id; 2: the id too).
    pub hash_version: i16,
    pub transaction_id: i64,
    pub prev_hash: String,
    pub hash: String,
    /// `events.sealed` exactly as stored: the hash covers these bytes.
    pub sealed: String,
    /// The salts of the values shown; none for redacted or erased ones.
    pub salts: Value,
    /// The metadata exactly as stored (the event's `metadata` is a typed view of it).
    pub stored_metadata: Value,
}

#[derive(Debug, Clone)]
pub struct ExportedEvent {
    pub event: AuditedEvent,
    pub integrity: EventIntegrity,
}

#[derive(sqlx::FromRow)]
struct ExportRow {
    #[sqlx(flatten)]
    event: EventRow,
    hash_version: i16,
    prev_hash: String,
    hash: String,
    sealed: String,
    salts: Value,
}

impl ExportRow {
    fn exported(self) -> Result<ExportedEvent, AppError> {
        let transaction_id = self.event.transaction_id();
        let stored_metadata = self.event.metadata_json().clone();
        let event = audited(self.event.into())?;
        let mut salts = self.salts;
        let shown = json!({"payload": event.payload.clone(), "metadata": stored_metadata.clone()});
        withhold_salts(&shown, &mut salts);
        Ok(ExportedEvent {
            event,
            integrity: EventIntegrity {
                hash_version: self.hash_version,
                transaction_id,
                prev_hash: self.prev_hash,
                hash: self.hash,
                sealed: self.sealed,
                salts,
                stored_metadata,
            },
        })
    }
}

/// An export in progress.
pub struct AuditExport {
    pool: PgPool,
    header: ExportHeader,
    newest: LogPosition,
    after: LogPosition,
    done: bool,
}

impl AuditQueries {
    /// Starts an export of the events matching `filter` committed so far.
    pub async fn export(&self, filter: AuditFilter) -> Result<AuditExport, AppError> {
        let newest: Option<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT transaction_id::text::bigint, global_position FROM events \
             WHERE transaction_id < {HORIZON} \
             ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        let newest = newest.map_or(
            LogPosition::default(),
            |(transaction_id, global_position)| LogPosition {
                transaction_id,
                global_position,
            },
        );
        Ok(AuditExport {
            pool: self.pool.clone(),
            header: ExportHeader {
                format: EXPORT_FORMAT,
                generated_at: Utc::now(),
                newest_global_position: newest.global_position,
                newest_transaction_id: newest.transaction_id,
                filters: filter,
            },
            newest,
            after: LogPosition::default(),
            done: false,
        })
    }
}

impl AuditExport {
    pub fn header(&self) -> &ExportHeader {
        &self.header
    }

    /// How many events the export holds (one counting query).
    pub async fn count(&self) -> Result<i64, AppError> {
        let mut query = self.select("SELECT count(*)");
        Ok(query.build_query_scalar().fetch_one(&self.pool).await?)
    }

    /// The signed checkpoints up to the export's newest event, in order;
    /// none for a filtered export (its events do not fold to them).
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, AppError> {
        if self.header.filters != AuditFilter::default() {
            return Ok(Vec::new());
        }
        Ok(stored_checkpoints(&self.pool, Some(self.newest)).await?)
    }

    /// The next page in publishing order; `None` once every event is out.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ExportedEvent>>, AppError> {
        if self.done {
            return Ok(None);
        }
        let mut query = self.select(&format!(
            "SELECT {}, e.hash_version, e.prev_hash, e.hash, e.sealed::text AS sealed, e.salts",
            event_log::columns_of("e")
        ));
        sql::push_after(&mut query, Source::EventStore, Order::Oldest, self.after);
        sql::push_order(&mut query, Source::EventStore, Order::Oldest);
        query.push(" LIMIT ");
        query.push_bind(EXPORT_PAGE);
        let rows: Vec<ExportRow> = query.build_query_as().fetch_all(&self.pool).await?;
        self.done = (rows.len() as i64) < EXPORT_PAGE;
        let page = rows
            .into_iter()
            .map(ExportRow::exported)
            .collect::<Result<Vec<_>, _>>()?;
        match page.last() {
            Some(last) => {
                self.after = LogPosition {
                    transaction_id: last.event.transaction_id,
                    global_position: last.event.global_position,
                };
                Ok(Some(page))
            }
            None => Ok(None),
        }
    }

    /// `<columns> FROM events e WHERE` up to the newest position and the filters.
    fn select(&self, columns: &str) -> QueryBuilder<'static, sqlx::Postgres> {
        let mut query = QueryBuilder::new(format!("{columns} FROM events e WHERE true"));
        sql::push_position(&mut query, Source::EventStore, "<=", self.newest);
        sql::push_filters(&mut query, Source::EventStore, &self.header.filters);
        query
    }
}
