//! The filters as SQL, on either table that can answer them: the audit log
//! (the list) or the event store itself (the export). Values are bound,
//! never spliced.

use bus::metadata_keys::{ACTOR_ID, API_KEY_ID, CORRELATION_ID};
use infra::event_log::LogPosition;
use sqlx::{Postgres, QueryBuilder};

use super::cursor::Order;
use super::filter::AuditFilter;

/// Where events are selected from, aliased `a` (audit_log) or `e` (events).
#[derive(Clone, Copy, Debug)]
pub enum Source {
    AuditLog,
    EventStore,
}

impl Source {
    /// `(transaction_id, global_position)`: publishing order.
    fn order_key(self) -> &'static str {
        match self {
            Self::AuditLog => "(a.transaction_id, a.global_position)",
            Self::EventStore => "(e.transaction_id, e.global_position)",
        }
    }

    /// How a bound bigint becomes comparable to the transaction id column.
    fn transaction_id_cast(self) -> &'static str {
        match self {
            Self::AuditLog => "",
            Self::EventStore => "::text::xid8",
        }
    }

    fn alias(self) -> &'static str {
        match self {
            Self::AuditLog => "a",
            Self::EventStore => "e",
        }
    }

    /// The column holding metadata `key`: a column of the audit log, a
    /// key of the event store's metadata object.
    fn metadata(self, key: &str) -> String {
        match self {
            Self::AuditLog => format!("a.{key}"),
            Self::EventStore => format!("(e.metadata ->> '{key}')"),
        }
    }
}

/// Appends `AND ...` for every filter given.
pub fn push_filters(query: &mut QueryBuilder<'_, Postgres>, source: Source, filter: &AuditFilter) {
    let alias = source.alias();
    if let Some(aggregate_type) = filter.aggregate_type {
        query.push(format!(" AND {alias}.aggregate_type = "));
        query.push_bind(aggregate_type);
    }
    if let Some(aggregate_id) = &filter.aggregate_id {
        query.push(format!(" AND {alias}.aggregate_id = "));
        query.push_bind(aggregate_id.clone());
    }
    if let Some(event_types) = &filter.event_types {
        query.push(format!(" AND {alias}.event_type = ANY("));
        query.push_bind(event_types.clone());
        query.push(")");
    }
    if let Some(actor_id) = &filter.actor_id {
        query.push(format!(" AND {} = ", source.metadata(ACTOR_ID)));
        query.push_bind(actor_id.clone());
    }
    if let Some(api_key_id) = &filter.api_key_id {
        query.push(format!(" AND {} = ", source.metadata(API_KEY_ID)));
        query.push_bind(api_key_id.clone());
    }
    if let Some(correlation_id) = &filter.correlation_id {
        query.push(format!(" AND {} = ", source.metadata(CORRELATION_ID)));
        query.push_bind(correlation_id.clone());
    }
    if let Some(from) = filter.from {
        query.push(format!(" AND {alias}.recorded_at >= "));
        query.push_bind(from);
    }
    if let Some(to) = filter.to {
        query.push(format!(" AND {alias}.recorded_at <= "));
        query.push_bind(to);
    }
}

/// Appends `AND (order key) <op> (position)`.
pub fn push_position(
    query: &mut QueryBuilder<'_, Postgres>,
    source: Source,
    operator: &str,
    position: LogPosition,
) {
    query.push(format!(" AND {} {operator} (", source.order_key()));
    query.push_bind(position.transaction_id);
    query.push(source.transaction_id_cast());
    query.push(", ");
    query.push_bind(position.global_position);
    query.push(")");
}

/// Appends `AND` the positions after `after` in `order`.
pub fn push_after(
    query: &mut QueryBuilder<'_, Postgres>,
    source: Source,
    order: Order,
    after: LogPosition,
) {
    let operator = match order {
        Order::Oldest => ">",
        Order::Newest => "<",
    };
    push_position(query, source, operator, after);
}

/// Appends `ORDER BY` publishing order, oldest or newest first.
pub fn push_order(query: &mut QueryBuilder<'_, Postgres>, source: Source, order: Order) {
    let alias = source.alias();
    let direction = match order {
        Order::Oldest => "ASC",
        Order::Newest => "DESC",
    };
    query.push(format!(
        " ORDER BY {alias}.transaction_id {direction}, {alias}.global_position {direction}"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::filter::FilterParams;

    fn sql(source: Source, params: FilterParams) -> String {
        let filter = AuditFilter::parse(&params).unwrap();
        let mut query = QueryBuilder::new("SELECT 1 WHERE true");
        push_filters(&mut query, source, &filter);
        push_after(&mut query, source, Order::Oldest, LogPosition::default());
        query.sql().to_owned()
    }

    fn every_filter() -> FilterParams {
        FilterParams {
            aggregate_type: Some("user".into()),
            aggregate_id: Some("id".into()),
            event_type: Some("user.".into()),
            actor_id: Some(uuid::Uuid::from_u128(1).to_string()),
            api_key_id: Some(uuid::Uuid::from_u128(2).to_string()),
            correlation_id: Some("request".into()),
            from: Some("2026-01-01T00:00:00Z".into()),
            to: Some("2026-02-01T00:00:00Z".into()),
        }
    }

    #[test]
    fn the_audit_log_is_filtered_on_its_columns_with_every_value_bound() {
        assert_eq!(
            sql(Source::AuditLog, every_filter()),
            "SELECT 1 WHERE true AND a.aggregate_type = $1 AND a.aggregate_id = $2 \
             AND a.event_type = ANY($3) AND a.actor_id = $4 AND a.api_key_id = $5 \
             AND a.correlation_id = $6 AND a.recorded_at >= $7 AND a.recorded_at <= $8 \
             AND (a.transaction_id, a.global_position) > ($9, $10)"
        );
    }

    #[test]
    fn the_event_store_is_filtered_on_its_metadata() {
        assert_eq!(
            sql(Source::EventStore, every_filter()),
            "SELECT 1 WHERE true AND e.aggregate_type = $1 AND e.aggregate_id = $2 \
             AND e.event_type = ANY($3) AND (e.metadata ->> 'actor_id') = $4 \
             AND (e.metadata ->> 'api_key_id') = $5 \
             AND (e.metadata ->> 'correlation_id') = $6 \
             AND e.recorded_at >= $7 AND e.recorded_at <= $8 \
             AND (e.transaction_id, e.global_position) > ($9::text::xid8, $10)"
        );
    }
}
