//! `GET /v1/audit/events`: the log, filtered and paged, from the
//! `audit_log` read model.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use app::audit::{page_limit, AuditQueries, ListRequest, Order};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use super::item::AuditEvent;
use super::{refuse_unknown, FilterQuery};
use crate::auth::principal::AuditRead;
use crate::auth::Allowed;
use crate::extract::ValidQuery;
use crate::freshness::Freshness;
use crate::problem::{ApiError, Problem, PROBLEM};
use crate::routes::users::{min_position, PROJECTION_POSITION};

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(flatten)]
    filters: FilterQuery,
    #[serde(flatten)]
    paging: PagingQuery,
    #[serde(flatten)]
    unknown: BTreeMap<String, String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PagingQuery {
    /// `newest` (default) or `oldest` first.
    #[param(value_type = Option<crate::closed_sets::AuditOrderName>, inline)]
    order: Option<String>,
    /// 1 to 1000, default 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page, with the same filters and order.
    cursor: Option<String>,
    /// Wait until the audit log has applied this global position.
    #[param(value_type = Option<i64>, minimum = 0)]
    min_position: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventPage {
    /// In publishing order (global position order, except that events of
    /// transactions that committed out of order follow commit order).
    items: Vec<AuditEvent>,
    /// Newest first: absent on the last page. Oldest first: always present;
    /// following it later returns the events appended since.
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/audit/events",
    tag = "audit",
    security(("bearer" = [])),
    params(FilterQuery, PagingQuery),
    responses(
        (status = 200, description = "A page of the log; header Projection-Position", body = AuditEventPage),
        (status = 400, description = "A malformed filter, limit or cursor, or `from` after `to`", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs audit:read", body = Problem, content_type = PROBLEM),
        (status = 504, description = "min_position not reached in time", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn list(
    pool: web::Data<PgPool>,
    freshness: web::Data<Freshness>,
    _: Allowed<AuditRead>,
    ValidQuery(query): ValidQuery<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    refuse_unknown(&query.unknown)?;
    let paging = query.paging;
    let min_position = min_position(paging.min_position.as_deref())?;
    let order = Order::parse(paging.order.as_deref())?;
    let limit = page_limit(paging.limit.as_deref())?;
    let filter = query.filters.parse()?;
    let applied = freshness.wait_for(min_position).await?;
    let page = AuditQueries::new(pool.get_ref().clone())
        .list(ListRequest {
            filter: &filter,
            order,
            cursor: paging.cursor.as_deref(),
            limit,
            applied,
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((PROJECTION_POSITION, applied.global_position))
        .json(AuditEventPage {
            items: page.items.into_iter().map(AuditEvent::from).collect(),
            next_cursor: page.next_cursor,
        }))
}
