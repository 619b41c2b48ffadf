//! One aggregate, from the event store: its stream's history, and its state
//! as of a moment folded with the write side's `apply`.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::{web, HttpResponse};
use app::audit::{page_limit, AggregateState, AuditQueries, StateAt};
use chrono::{DateTime, Utc};
use domain::SessionEnd;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::item::AuditEvent;
use super::refuse_unknown;
use crate::auth::principal::AuditRead;
use crate::auth::Allowed;
use crate::extract::ValidQuery;
use crate::problem::{ApiError, FieldError, Problem, PROBLEM};

#[derive(Serialize, ToSchema)]
pub struct History {
    /// In sequence order.
    items: Vec<AuditEvent>,
    /// Absent on the last page.
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    #[serde(flatten)]
    paging: HistoryParams,
    #[serde(flatten)]
    unknown: BTreeMap<String, String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// 1 to 1000, default 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page of the same stream.
    cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StateParams {
    /// RFC 3339; only events recorded at or before it are folded. Default: all.
    #[param(value_type = Option<DateTime<Utc>>)]
    as_of: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UserStateView {
    #[schema(required = true)]
    id: Option<Uuid>,
    #[schema(required = true)]
    email: Option<String>,
    #[schema(required = true)]
    display_name: Option<String>,
    /// `active` or `deactivated`.
    status: String,
    roles: BTreeSet<Uuid>,
    #[schema(required = true)]
    locked_until: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct RoleStateView {
    #[schema(required = true)]
    id: Option<Uuid>,
    #[schema(required = true)]
    name: Option<String>,
    #[schema(required = true)]
    description: Option<String>,
    permissions: Vec<String>,
    deleted: bool,
}

/// How and when a session ended.
#[derive(Serialize, ToSchema)]
pub struct SessionEnded {
    /// `revoked` or `expired`.
    kind: String,
    reason: String,
    at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionStateView {
    #[schema(required = true)]
    id: Option<Uuid>,
    #[schema(required = true)]
    user_id: Option<Uuid>,
    #[schema(required = true)]
    started_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    expires_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    last_activity_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    ip: Option<String>,
    #[schema(required = true)]
    user_agent: Option<String>,
    #[schema(required = true)]
    ended: Option<SessionEnded>,
}

/// A webhook's subscription (its signing secrets are not state an auditor sees).
#[derive(Serialize, ToSchema)]
pub struct WebhookStateView {
    #[schema(required = true)]
    id: Option<Uuid>,
    #[schema(required = true)]
    url: Option<String>,
    event_types: Vec<String>,
    description: String,
    enabled: bool,
    deleted: bool,
}

/// Where a signed checkpoint stands.
#[derive(Serialize, ToSchema)]
pub struct SignedPointView {
    transaction_id: i64,
    global_position: i64,
    running_hash: String,
    event_count: i64,
}

/// A checkpoint signing key's acknowledgements (`api audit acknowledge`).
#[derive(Serialize, ToSchema)]
pub struct AuditSignerStateView {
    acknowledgements: u64,
    /// Where the last acknowledgement let the signer go on from; null: the
    /// start of the log.
    #[schema(required = true)]
    adopted: Option<SignedPointView>,
}

/// A key of a service account, as of the moment asked (never its digest).
#[derive(Serialize, ToSchema)]
pub struct ServiceAccountKeyView {
    key_id: Uuid,
    description: String,
    scope: Vec<String>,
    expires_at: DateTime<Utc>,
    revoked: bool,
    replaced_by: Option<Uuid>,
}

/// A machine client's identity.
#[derive(Serialize, ToSchema)]
pub struct ServiceAccountStateView {
    #[schema(required = true)]
    id: Option<Uuid>,
    #[schema(required = true)]
    name: Option<String>,
    description: String,
    /// `active`, `disabled` or `erased`.
    status: String,
    roles: BTreeSet<Uuid>,
    keys: Vec<ServiceAccountKeyView>,
}

/// A person's second factors (never a secret or a code's digest).
#[derive(Serialize, ToSchema)]
pub struct SecondFactorsStateView {
    totp_factors: BTreeSet<Uuid>,
    recovery_codes_left: usize,
}

/// The aggregate's fields an auditor may see (no password or refresh-token hash).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum StateView {
    User(UserStateView),
    Role(RoleStateView),
    Session(SessionStateView),
    Webhook(WebhookStateView),
    AuditSigner(AuditSignerStateView),
    ServiceAccount(ServiceAccountStateView),
    SecondFactors(SecondFactorsStateView),
}

impl From<AggregateState> for StateView {
    fn from(state: AggregateState) -> Self {
        match state {
            AggregateState::User(user) => Self::User(UserStateView {
                id: user.id,
                email: user.email,
                display_name: user.display_name,
                status: user.status.as_str().to_owned(),
                roles: user.roles,
                locked_until: user.locked_until,
            }),
            AggregateState::Role(role) => Self::Role(RoleStateView {
                id: role.id,
                name: role.name,
                description: role.description,
                permissions: role
                    .permissions
                    .iter()
                    .map(|p| p.as_str().to_owned())
                    .collect(),
                deleted: role.deleted,
            }),
            AggregateState::Session(session) => Self::Session(SessionStateView {
                id: session.id,
                user_id: session.user_id,
                started_at: session.started_at,
                expires_at: session.expires_at,
                last_activity_at: session.last_activity_at,
                ip: session.ip,
                user_agent: session.user_agent,
                ended: session.ended.map(|end| match end {
                    SessionEnd::Revoked { reason, at } => SessionEnded {
                        kind: "revoked".to_owned(),
                        reason: reason.as_str().to_owned(),
                        at,
                    },
                    SessionEnd::Expired { reason, at } => SessionEnded {
                        kind: "expired".to_owned(),
                        reason: reason.as_str().to_owned(),
                        at,
                    },
                }),
            }),
            AggregateState::Webhook(webhook) => Self::Webhook(WebhookStateView {
                id: webhook.id,
                url: webhook.url,
                event_types: webhook.event_types,
                description: webhook.description,
                enabled: webhook.enabled,
                deleted: webhook.deleted,
            }),
            AggregateState::AuditSigner(signer) => Self::AuditSigner(AuditSignerStateView {
                acknowledgements: signer.acknowledgements,
                adopted: signer.adopted.map(|point| SignedPointView {
                    transaction_id: point.transaction_id,
                    global_position: point.global_position,
                    running_hash: point.running_hash,
                    event_count: point.event_count,
                }),
            }),
            AggregateState::SecondFactors(factors) => Self::SecondFactors(SecondFactorsStateView {
                totp_factors: factors.totp_factors,
                recovery_codes_left: factors.recovery_codes_left,
            }),
            AggregateState::ServiceAccount(account) => {
                Self::ServiceAccount(ServiceAccountStateView {
                    id: account.id,
                    name: account.name,
                    description: account.description,
                    status: account.status.as_str().to_owned(),
                    roles: account.roles,
                    keys: account
                        .keys
                        .into_iter()
                        .map(|(key_id, key)| ServiceAccountKeyView {
                            key_id,
                            description: key.description.as_str().to_owned(),
                            scope: key.scope.iter().map(|p| p.as_str().to_owned()).collect(),
                            expires_at: key.expires_at,
                            revoked: key.revoked,
                            replaced_by: key.replaced_by,
                        })
                        .collect(),
                })
            }
        }
    }
}

/// An aggregate folded from the event store.
#[derive(Serialize, ToSchema)]
pub struct AggregateStateView {
    aggregate_type: String,
    aggregate_id: String,
    /// The `as_of` asked for, if any.
    #[schema(required = true)]
    as_of: Option<DateTime<Utc>>,
    /// Of the last event folded.
    sequence: i64,
    /// Of the last event folded.
    global_position: i64,
    /// When the last event folded was recorded.
    recorded_at: DateTime<Utc>,
    state: StateView,
}

#[utoipa::path(
    get,
    path = "/v1/audit/{aggregate_type}/{id}/history",
    tag = "audit",
    security(("bearer" = [])),
    params(
        ("aggregate_type" = inline(crate::closed_sets::AggregateTypeName), Path, description = "An aggregate type of the event contract"),
        ("id" = String, Path, description = "The aggregate id"),
        HistoryParams,
    ),
    responses(
        (status = 200, description = "A page of the stream's events in sequence order, from the event store", body = History),
        (status = 400, description = "A malformed limit, a cursor not issued for this stream, or an unknown parameter", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs audit:read", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown aggregate type, or no events", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn history(
    pool: web::Data<PgPool>,
    _: Allowed<AuditRead>,
    path: web::Path<(String, String)>,
    ValidQuery(query): ValidQuery<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    refuse_unknown(&query.unknown)?;
    let limit = page_limit(query.paging.limit.as_deref())?;
    let (aggregate_type, id) = path.into_inner();
    let page = AuditQueries::new(pool.get_ref().clone())
        .history(&aggregate_type, &id, query.paging.cursor.as_deref(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(History {
        items: page.items.into_iter().map(AuditEvent::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/audit/{aggregate_type}/{id}/state",
    tag = "audit",
    security(("bearer" = [])),
    params(
        ("aggregate_type" = inline(crate::closed_sets::AggregateTypeName), Path, description = "An aggregate type of the event contract"),
        ("id" = String, Path, description = "The aggregate id"),
        StateParams,
    ),
    responses(
        (status = 200, description = "The aggregate folded with the write side's apply", body = AggregateStateView),
        (status = 400, description = "Bad as_of", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs audit:read", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown aggregate type, or it did not exist yet at as_of", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn state(
    pool: web::Data<PgPool>,
    _: Allowed<AuditRead>,
    path: web::Path<(String, String)>,
    ValidQuery(params): ValidQuery<StateParams>,
) -> Result<HttpResponse, ApiError> {
    let (aggregate_type, id) = path.into_inner();
    let as_of = params
        .as_of
        .as_deref()
        .map(|raw| {
            DateTime::parse_from_rfc3339(raw)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::BadRequest(vec![FieldError::new(
                        "as_of",
                        "must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z",
                    )])
                })
        })
        .transpose()?;
    let StateAt {
        sequence,
        global_position,
        recorded_at,
        state,
    } = AuditQueries::new(pool.get_ref().clone())
        .state(&aggregate_type, &id, as_of)
        .await?;
    Ok(HttpResponse::Ok().json(AggregateStateView {
        aggregate_type,
        aggregate_id: id,
        as_of,
        sequence,
        global_position,
        recorded_at,
        state: state.into(),
    }))
}
