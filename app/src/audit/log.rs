//! The list of events across the log, read from the `audit_log` read model
//! joined to the event store for payloads and metadata. Only what the
//! projection has applied is listed: up to its checkpoint, publishing order
//! is a prefix that never gains a row, so a cursor walk sees every event once.

use infra::event_log::{self, EventRow, LogPosition};
use sqlx::QueryBuilder;

use super::cursor::{Cursor, Order};
use super::filter::AuditFilter;
use super::sql::{self, Source};
use super::{audited, AuditQueries, AuditedEvent};
use crate::AppError;

/// What to list.
#[derive(Debug, Clone)]
pub struct ListRequest<'a> {
    pub filter: &'a AuditFilter,
    pub order: Order,
    /// `next_cursor` of the previous page, as given.
    pub cursor: Option<&'a str>,
    pub limit: i64,
    /// The projection's checkpoint: nothing after it is listed.
    pub applied: LogPosition,
}

#[derive(Debug)]
pub struct AuditPage {
    pub items: Vec<AuditedEvent>,
    /// Newest first: absent on the last page. Oldest first: always given,
    /// so a walk can come back for events appended since.
    pub next_cursor: Option<String>,
}

impl AuditQueries {
    pub async fn list(&self, request: ListRequest<'_>) -> Result<AuditPage, AppError> {
        let fingerprint = request.filter.fingerprint();
        let after = match request.cursor {
            Some(raw) => Some(
                self.issued(Cursor::decode(raw, request.order, fingerprint)?)
                    .await?,
            ),
            None => None,
        };
        let mut query = QueryBuilder::new(format!(
            "SELECT {} FROM audit_log a JOIN events e ON e.global_position = a.global_position \
             WHERE true",
            event_log::columns_of("e")
        ));
        sql::push_position(&mut query, Source::AuditLog, "<=", request.applied);
        sql::push_filters(&mut query, Source::AuditLog, request.filter);
        if let Some(after) = after {
            sql::push_after(&mut query, Source::AuditLog, request.order, after);
        }
        sql::push_order(&mut query, Source::AuditLog, request.order);
        query.push(" LIMIT ");
        query.push_bind(request.limit + 1);
        let rows: Vec<EventRow> = query.build_query_as().fetch_all(&self.pool).await?;
        let more = rows.len() as i64 > request.limit;
        let items = rows
            .into_iter()
            .take(request.limit as usize)
            .map(|row| audited(row.into()))
            .collect::<Result<Vec<_>, _>>()?;
        let last = items.last().map(|item| LogPosition {
            transaction_id: item.transaction_id,
            global_position: item.global_position,
        });
        let next = match request.order {
            Order::Newest => last.filter(|_| more),
            Order::Oldest => last.or(after).or(Some(LogPosition::default())),
        };
        Ok(AuditPage {
            items,
            next_cursor: next.map(|after| {
                Cursor {
                    order: request.order,
                    after,
                    fingerprint,
                }
                .encode()
            }),
        })
    }

    /// The cursor's position, if it is the start or an event in the log: a
    /// cursor naming no event was not issued here.
    async fn issued(&self, cursor: Cursor) -> Result<LogPosition, AppError> {
        if cursor.after == LogPosition::default() {
            return Ok(cursor.after);
        }
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM audit_log \
              WHERE global_position = $1 AND transaction_id = $2)",
        )
        .bind(cursor.after.global_position)
        .bind(cursor.after.transaction_id)
        .fetch_one(&self.pool)
        .await?;
        if !exists {
            return Err(AppError::BadParameter {
                parameter: "cursor",
                message: "was not issued for this query",
            });
        }
        Ok(cursor.after)
    }
}
