//! `/v1/roles`: named sets of permissions. Reading needs `roles:read`,
//! changing needs `roles:write`.

use std::collections::BTreeSet;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::{Permission, RoleDescription, RoleName};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgPool};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::users::{min_position, CommandAccepted, PROJECTION_POSITION};
use crate::auth::principal::{RolesRead, RolesWrite};
use crate::auth::Allowed;
use crate::extract::{RequestContext, ValidJson, ValidQuery};
use crate::freshness::Freshness;
use crate::problem::{ApiError, FieldError, Problem, PROBLEM};
use app::roles::RoleCommands;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/roles")
            .route(web::post().to(create))
            .route(web::get().to(list))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/roles/{id}")
            .route(web::get().to(get))
            .route(web::delete().to(delete))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/roles/{id}/permissions")
            .route(web::put().to(set_permissions))
            .default_service(web::to(super::method_not_allowed)),
    );
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleRequest {
    /// 1 to 64 characters: letters, digits, `-`, `_`, `.`, `:`; unique, ignoring case.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.:-]+$")]
    name: String,
    /// Up to 500 characters.
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    description: String,
    /// Permission names, e.g. `users:read`.
    #[schema(schema_with = crate::openapi::permission_names)]
    permissions: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPermissionsRequest {
    #[schema(schema_with = crate::openapi::permission_names)]
    permissions: Vec<String>,
}

#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct RoleView {
    id: Uuid,
    name: String,
    description: String,
    permissions: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct RoleList {
    items: Vec<RoleView>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Wait until the read model has applied this global position.
    #[param(value_type = Option<i64>, minimum = 0)]
    min_position: Option<String>,
}

const COLUMNS: &str = "role_id AS id, name, description, permissions, created_at, updated_at";

#[utoipa::path(
    post,
    path = "/v1/roles",
    tag = "roles",
    security(("bearer" = [])),
    request_body = CreateRoleRequest,
    responses(
        (status = 201, description = "Created; Location names the role", body = CommandAccepted),
        (status = 401, description = "No valid access token, or (`step-up-required`, for a role granting permissions) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs roles:write", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The name is taken", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Bad name or description, or an unknown permission (named)", body = Problem, content_type = PROBLEM),
    )
)]
async fn create(
    commands: web::Data<RoleCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<RolesWrite>,
    ValidJson(body): ValidJson<CreateRoleRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let name = RoleName::parse(&body.name)
        .map_err(|error| errors.push(FieldError::new("name", error)))
        .ok();
    let description = RoleDescription::parse(&body.description)
        .map_err(|error| errors.push(FieldError::new("description", error)))
        .ok();
    let permissions = permissions(&body.permissions, &mut errors);
    let (Some(name), Some(description), true) = (name, description, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    if !permissions.is_empty() {
        principal.require_step_up()?;
    }
    let (id, position) = commands
        .create(
            &context,
            Some(&principal.actor()),
            name,
            description,
            permissions,
        )
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/roles/{id}")))
        .json(CommandAccepted::new(id, position)))
}

#[utoipa::path(
    put,
    path = "/v1/roles/{id}/permissions",
    tag = "roles",
    security(("bearer" = [])),
    request_body = SetPermissionsRequest,
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The role now grants exactly these permissions", body = CommandAccepted),
        (status = 401, description = "No valid access token, or (`step-up-required`) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs roles:write", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or deleted role", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`last-administrator`: no active user would hold every permission any more; or a concurrent change", body = Problem, content_type = PROBLEM),
        (status = 422, description = "An unknown permission (named)", body = Problem, content_type = PROBLEM),
    )
)]
async fn set_permissions(
    commands: web::Data<RoleCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<RolesWrite>,
    id: web::Path<String>,
    ValidJson(body): ValidJson<SetPermissionsRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = role_id(&id)?;
    let mut errors = Vec::new();
    let permissions = permissions(&body.permissions, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    principal.require_step_up()?;
    let position = commands
        .set_permissions(&context, &principal.actor(), id, permissions)
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted::new(id, position)))
}

#[utoipa::path(
    delete,
    path = "/v1/roles/{id}",
    tag = "roles",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Deleted; its name is free again and it grants nothing", body = CommandAccepted),
        (status = 403, description = "Needs roles:write", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or already deleted role", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`last-administrator`: no active user would hold every permission any more; or a concurrent change", body = Problem, content_type = PROBLEM),
    )
)]
async fn delete(
    commands: web::Data<RoleCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<RolesWrite>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = role_id(&id)?;
    let position = commands.delete(&context, &principal.actor(), id).await?;
    Ok(HttpResponse::Ok().json(CommandAccepted::new(id, position)))
}

#[utoipa::path(
    get,
    path = "/v1/roles",
    tag = "roles",
    security(("bearer" = [])),
    params(ReadParams),
    responses(
        (status = 200, description = "Every live role by name; header Projection-Position", body = RoleList),
        (status = 403, description = "Needs roles:read", body = Problem, content_type = PROBLEM),
    )
)]
async fn list(
    pool: web::Data<PgPool>,
    freshness: web::Data<Freshness>,
    _: Allowed<RolesRead>,
    ValidQuery(params): ValidQuery<ReadParams>,
) -> Result<HttpResponse, ApiError> {
    let applied = freshness
        .wait_for(min_position(params.min_position.as_deref())?)
        .await?;
    let items = sqlx::query_as::<_, RoleView>(&format!(
        "SELECT {COLUMNS} FROM roles_view WHERE deleted_at IS NULL ORDER BY name_key LIMIT 1000"
    ))
    .fetch_all(pool.get_ref())
    .await
    .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .insert_header((PROJECTION_POSITION, applied.global_position))
        .json(RoleList { items }))
}

#[utoipa::path(
    get,
    path = "/v1/roles/{id}",
    tag = "roles",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ReadParams),
    responses(
        (status = 200, description = "The role; header Projection-Position", body = RoleView),
        (status = 403, description = "Needs roles:read", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or deleted role", body = Problem, content_type = PROBLEM),
    )
)]
async fn get(
    pool: web::Data<PgPool>,
    freshness: web::Data<Freshness>,
    _: Allowed<RolesRead>,
    id: web::Path<String>,
    ValidQuery(params): ValidQuery<ReadParams>,
) -> Result<HttpResponse, ApiError> {
    let id = role_id(&id)?;
    let applied = freshness
        .wait_for(min_position(params.min_position.as_deref())?)
        .await?;
    let role = sqlx::query_as::<_, RoleView>(&format!(
        "SELECT {COLUMNS} FROM roles_view WHERE role_id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(pool.get_ref())
    .await
    .map_err(ApiError::internal)?
    .ok_or(ApiError::NotFound("role"))?;
    Ok(HttpResponse::Ok()
        .insert_header((PROJECTION_POSITION, applied.global_position))
        .json(role))
}

/// Every name parsed; each unknown one is a field error naming its index.
fn permissions(names: &[String], errors: &mut Vec<FieldError>) -> BTreeSet<Permission> {
    names
        .iter()
        .enumerate()
        .filter_map(|(index, name)| {
            Permission::parse(name)
                .map_err(|error| {
                    errors.push(FieldError::new(format!("permissions[{index}]"), error))
                })
                .ok()
        })
        .collect()
}

/// An id that is not a UUID names no role.
fn role_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound("role"))
}
