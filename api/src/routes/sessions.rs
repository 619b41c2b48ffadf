//! `/v1/sessions`: a user's sessions (read model) and revoking one.

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::{Permission, RevocationReason, Session, SessionEvent};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgPool};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::users::{min_position, PROJECTION_POSITION};
use crate::auth::principal::{path_id, Authorizing};
use crate::auth::Principal;
use crate::extract::{RequestContext, ValidQuery};
use crate::freshness::Freshness;
use crate::problem::{ApiError, FieldError, Problem, PROBLEM};
use app::sign_in::SignIn;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/sessions")
            .route(web::get().to(list))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/sessions/{id}")
            .route(web::delete().to(revoke))
            .default_service(web::to(super::method_not_allowed)),
    );
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Whose sessions; default: the caller's. Anyone else's needs `sessions:read`.
    #[param(value_type = Option<Uuid>)]
    user_id: Option<String>,
    /// Wait until the read model has applied this global position.
    #[param(value_type = Option<i64>, minimum = 0)]
    min_position: Option<String>,
}

#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct SessionView {
    session_id: Uuid,
    user_id: Uuid,
    /// `active`, `revoked` or `expired`.
    status: String,
    end_reason: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    started_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    last_activity_at: DateTime<Utc>,
    idle_expires_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    items: Vec<SessionView>,
}

/// The caller, allowed to list the sessions of the `user_id` query parameter.
pub struct SessionsOf {
    user_id: Uuid,
}

impl FromRequest for SessionsOf {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let params = ValidQuery::<ListParams>::from_request(req, payload).into_inner();
        let req = req.clone();
        Box::pin(async move {
            let principal = Principal::authenticate(&req).await?;
            let ValidQuery(params) = params?;
            let user_id = match params.user_id.as_deref() {
                None => principal.user_id,
                Some(raw) => Uuid::parse_str(raw).map_err(|_| {
                    ApiError::BadRequest(vec![FieldError::new("user_id", "is not a UUID")])
                })?,
            };
            principal.require_self_or(user_id, Permission::SessionsRead)?;
            Ok(Self { user_id })
        })
    }
}

#[utoipa::path(
    get,
    path = "/v1/sessions",
    tag = "sessions",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "Newest first; header Projection-Position", body = SessionList),
        (status = 400, description = "Bad query parameter", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Another user's sessions without sessions:read", body = Problem, content_type = PROBLEM),
    )
)]
async fn list(
    pool: web::Data<PgPool>,
    freshness: web::Data<Freshness>,
    access: SessionsOf,
    ValidQuery(params): ValidQuery<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let applied = freshness
        .wait_for(min_position(params.min_position.as_deref())?)
        .await?;
    let items = sqlx::query_as::<_, SessionView>(
        "SELECT session_id, user_id, status, end_reason, ip, user_agent, started_at, expires_at, \
                last_activity_at, idle_expires_at, ended_at \
         FROM sessions_view WHERE user_id = $1 ORDER BY started_at DESC LIMIT 200",
    )
    .bind(access.user_id)
    .fetch_all(pool.get_ref())
    .await
    .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .insert_header((PROJECTION_POSITION, applied.global_position))
        .json(SessionList { items }))
}

/// The caller, allowed to revoke the session in the path: their own, or any
/// with `sessions:revoke`. The owner is read from the event store. Not
/// charged to the caller's command budget (see [`Principal::identify`]).
pub struct RevocableSession {
    principal: Principal,
    session_id: Uuid,
}

impl FromRequest for RevocableSession {
    type Error = ApiError;
    type Future = Authorizing<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let principal = Principal::identify(&req).await?;
            let pool = req
                .app_data::<web::Data<PgPool>>()
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("pool not configured")))?;
            let session_id = path_id(&req, "session")?;
            let owner = session_owner(pool, session_id)
                .await?
                .ok_or(ApiError::NotFound("session"))?;
            principal.require_self_or(owner, Permission::SessionsRevoke)?;
            Ok(Self {
                principal,
                session_id,
            })
        })
    }
}

async fn session_owner(pool: &PgPool, session_id: Uuid) -> Result<Option<Uuid>, ApiError> {
    let sql = format!(
        "SELECT {} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_type = $3",
        SessionEvent::STARTED_USER_ID.json_text()
    );
    let owner: Option<String> = sqlx::query_scalar(&sql)
        .bind(Session::TYPE)
        .bind(session_id.to_string())
        .bind(SessionEvent::STARTED.name())
        .fetch_optional(pool)
        .await
        .map_err(ApiError::internal)?;
    Ok(owner.and_then(|id| Uuid::parse_str(&id).ok()))
}

#[derive(Serialize, ToSchema)]
pub struct Revoked {
    id: Uuid,
    position: i64,
}

#[utoipa::path(
    delete,
    path = "/v1/sessions/{id}",
    tag = "sessions",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Revoked (or had already ended); its tokens are refused from now on", body = Revoked),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Another user's session without sessions:revoke", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown session", body = Problem, content_type = PROBLEM),
    )
)]
async fn revoke(
    sign_in: web::Data<SignIn>,
    context: RequestContext,
    target: RevocableSession,
) -> Result<HttpResponse, ApiError> {
    let position = sign_in
        .end_session(
            &context,
            target.principal.user_id,
            target.session_id,
            RevocationReason::Revoked,
        )
        .await?;
    Ok(HttpResponse::Ok().json(Revoked {
        id: target.session_id,
        position,
    }))
}
