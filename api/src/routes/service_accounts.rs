//! `/v1/service-accounts`: machine clients' identities and their API keys.
//! Reading needs `service_accounts:read`, changing `service_accounts:write`;
//! the rules of who may give what are the use cases'
//! ([`app::service_accounts`]).

use std::collections::BTreeSet;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use app::service_accounts::queries::{ApiKeyRow, ServiceAccountQueries, ServiceAccountRow};
use app::service_accounts::{IssuedApiKey, KeyRequest, ServiceAccountCommands};
use chrono::{DateTime, TimeDelta, Utc};
use domain::{Permission, ServiceAccountDescription, ServiceAccountName};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::field;
use super::users::CommandAccepted;
use crate::auth::principal::{ServiceAccountsRead, ServiceAccountsWrite};
use crate::auth::Allowed;
use crate::extract::{OptionalJson, RequestContext, ValidJson};
use crate::problem::{ApiError, FieldError, Problem, PROBLEM};

pub fn configure(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| {
        web::resource(path.to_owned()).default_service(web::to(super::method_not_allowed))
    };
    cfg.service(
        resource("/service-accounts")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        resource("/service-accounts/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update)),
    )
    .service(resource("/service-accounts/{id}/erase").route(web::post().to(erase)))
    .service(
        resource("/service-accounts/{id}/roles/{role_id}")
            .route(web::put().to(assign_role))
            .route(web::delete().to(unassign_role)),
    )
    .service(resource("/service-accounts/{id}/keys").route(web::post().to(issue_key)))
    .service(resource("/service-accounts/{id}/keys/{key_id}").route(web::delete().to(revoke_key)))
    .service(
        resource("/service-accounts/{id}/keys/{key_id}/rotate").route(web::post().to(rotate_key)),
    );
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceAccountRequest {
    /// 1 to 64 ASCII letters, digits, '-', '_', '.' and ':'.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.:-]+$")]
    name: String,
    /// Up to 500 characters.
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    description: String,
}

/// Give any of the fields; the others stay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateServiceAccountRequest {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9_.:-]+$",
        nullable = false
    )]
    name: Option<String>,
    #[schema(
        nullable = false,
        max_length = 500,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    description: Option<String>,
    /// `false` disables the account: its keys and tokens stop working at once.
    #[schema(nullable = false)]
    enabled: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueKeyRequest {
    /// Up to 500 characters: where the key is used.
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    description: String,
    /// Permissions the key may use, of those the account holds (and the
    /// caller too); absent: all the account holds now.
    scope: Option<Vec<String>>,
    /// Absent: the longest lifetime allowed (API_KEY_MAX_LIFETIME_DAYS).
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// How long the replaced key keeps working beside the new one: 0 to
    /// 604800 (7 days); default 86400.
    #[schema(minimum = 0, maximum = 604800)]
    overlap_seconds: Option<i64>,
}

/// The key is shown here only: keep it.
#[derive(Serialize, ToSchema)]
pub struct KeyIssued {
    service_account_id: Uuid,
    key_id: Uuid,
    /// `idsk_<key id, 32 hex>_<secret, 64 hex>_<checksum, 8 hex>`.
    key: String,
    scope: Vec<String>,
    expires_at: DateTime<Utc>,
    position: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceAccountView {
    id: Uuid,
    name: String,
    description: String,
    /// `active` or `disabled`.
    status: String,
    roles: Vec<String>,
    role_ids: Vec<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    key_id: Uuid,
    description: String,
    scope: Vec<String>,
    issued_at: DateTime<Utc>,
    /// Lowered by a rotation to the end of its overlap.
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    /// The key that replaced it in a rotation.
    replaced_by: Option<Uuid>,
    /// To the minute: written at most once a minute.
    last_used_at: Option<DateTime<Utc>>,
    last_used_from: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceAccountDetail {
    #[serde(flatten)]
    account: ServiceAccountView,
    /// Newest first, revoked and expired ones included.
    keys: Vec<ApiKeyView>,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceAccountList {
    items: Vec<ServiceAccountView>,
}

#[utoipa::path(
    post,
    path = "/v1/service-accounts",
    tag = "service-accounts",
    security(("bearer" = [])),
    request_body = CreateServiceAccountRequest,
    responses(
        (status = 201, description = "Created, holding no role; Location names it", body = CommandAccepted),
        (status = 403, description = "Needs service_accounts:write", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A bad name or description (named)", body = Problem, content_type = PROBLEM),
    )
)]
async fn create(
    commands: web::Data<ServiceAccountCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<ServiceAccountsWrite>,
    ValidJson(body): ValidJson<CreateServiceAccountRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let name = field(&mut errors, "name", ServiceAccountName::parse(&body.name));
    let description = field(
        &mut errors,
        "description",
        ServiceAccountDescription::parse(&body.description),
    );
    let (Some(name), Some(description)) = (name, description) else {
        return Err(ApiError::Validation(errors));
    };
    let (id, position) = commands
        .create(&context, Some(&principal.actor()), name, description)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/service-accounts/{id}")))
        .json(CommandAccepted::new(id, position)))
}

#[utoipa::path(
    get,
    path = "/v1/service-accounts",
    tag = "service-accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every account not erased, oldest first", body = ServiceAccountList),
        (status = 403, description = "Needs service_accounts:read", body = Problem, content_type = PROBLEM),
    )
)]
async fn list(
    queries: web::Data<ServiceAccountQueries>,
    _: Allowed<ServiceAccountsRead>,
) -> Result<HttpResponse, ApiError> {
    let items = queries
        .list()
        .await?
        .into_iter()
        .map(account_view)
        .collect();
    Ok(HttpResponse::Ok().json(ServiceAccountList { items }))
}

#[utoipa::path(
    get,
    path = "/v1/service-accounts/{id}",
    tag = "service-accounts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The account and its keys (never a key's secret)", body = ServiceAccountDetail),
        (status = 403, description = "Needs service_accounts:read", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or erased account", body = Problem, content_type = PROBLEM),
    )
)]
async fn get(
    queries: web::Data<ServiceAccountQueries>,
    _: Allowed<ServiceAccountsRead>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    let (account, keys) = queries.get(id).await?;
    Ok(HttpResponse::Ok().json(ServiceAccountDetail {
        account: account_view(account),
        keys: keys.into_iter().map(key_view).collect(),
    }))
}

#[utoipa::path(
    patch,
    path = "/v1/service-accounts/{id}",
    tag = "service-accounts",
    security(("bearer" = [])),
    request_body = UpdateServiceAccountRequest,
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Changed (no event when nothing changes)", body = CommandAccepted),
        (status = 403, description = "Needs service_accounts:write and every permission the account holds", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or erased account", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A bad field (named), or no field", body = Problem, content_type = PROBLEM),
    )
)]
async fn update(
    commands: web::Data<ServiceAccountCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<ServiceAccountsWrite>,
    path: web::Path<String>,
    ValidJson(body): ValidJson<UpdateServiceAccountRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    let mut errors = Vec::new();
    if body.name.is_none() && body.description.is_none() && body.enabled.is_none() {
        errors.push(FieldError::new(
            "name",
            "give at least one of name, description and enabled",
        ));
    }
    let name = body
        .name
        .map(|name| field(&mut errors, "name", ServiceAccountName::parse(&name)));
    let description = body.description.map(|description| {
        field(
            &mut errors,
            "description",
            ServiceAccountDescription::parse(&description),
        )
    });
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let position = commands
        .update(
            &context,
            &principal.actor(),
            id,
            name.flatten(),
            description.flatten(),
            body.enabled,
        )
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted::new(id, position)))
}

#[utoipa::path(
    post,
    path = "/v1/service-accounts/{id}/erase",
    tag = "service-accounts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Erased for good: its keys and tokens stop working at once and its roles are taken", body = CommandAccepted),
        (status = 401, description = "No valid access token, or (`step-up-required`) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs service_accounts:write and every permission the account holds", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or already erased account", body = Problem, content_type = PROBLEM),
    )
)]
async fn erase(
    commands: web::Data<ServiceAccountCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<ServiceAccountsWrite>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    principal.require_step_up()?;
    let position = commands.erase(&context, &principal.actor(), id).await?;
    Ok(HttpResponse::Ok().json(CommandAccepted::new(id, position)))
}

#[utoipa::path(
    put,
    path = "/v1/service-accounts/{id}/roles/{role_id}",
    tag = "service-accounts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("role_id" = Uuid, Path)),
    responses(
        (status = 200, description = "Assigned: its keys may use the role's permissions at once", body = CommandAccepted),
        (status = 401, description = "No valid access token, or (`step-up-required`) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs service_accounts:write and every permission the role grants", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or erased account", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The role is already assigned", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`role_id` names no role", body = Problem, content_type = PROBLEM),
    )
)]
async fn assign_role(
    commands: web::Data<ServiceAccountCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<ServiceAccountsWrite>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, role_id) = account_and(&path, "role")?;
    principal.require_step_up()?;
    let position = commands
        .assign_role(&context, Some(&principal.actor()), id, role_id)
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted::new(id, position)))
}

#[utoipa::path(
    delete,
    path = "/v1/service-accounts/{id}/roles/{role_id}",
    tag = "service-accounts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("role_id" = Uuid, Path)),
    responses(
        (status = 200, description = "Unassigned: its keys lose the role's permissions at once", body = CommandAccepted),
        (status = 403, description = "Needs service_accounts:write and every permission the role grants", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown account, or the role is not assigned", body = Problem, content_type = PROBLEM),
    )
)]
async fn unassign_role(
    commands: web::Data<ServiceAccountCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<ServiceAccountsWrite>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, role_id) = account_and(&path, "role assignment")?;
    let position = commands
        .unassign_role(&context, &principal.actor(), id, role_id)
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted::new(id, position)))
}

#[utoipa::path(
    post,
    path = "/v1/service-accounts/{id}/keys",
    tag = "service-accounts",
    security(("bearer" = [])),
    request_body = IssueKeyRequest,
    params(("id" = Uuid, Path)),
    responses(
        (status = 201, description = "Issued; the key is shown this once", body = KeyIssued),
        (status = 401, description = "No valid access token, or (`step-up-required`) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs service_accounts:write, every permission the account holds and every one of the scope", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or erased account", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The account is disabled", body = Problem, content_type = PROBLEM),
        (status = 422, description = "An unknown permission or one the account lacks in `scope`, an `expires_at` past or beyond the longest lifetime, a long description (named)", body = Problem, content_type = PROBLEM),
    )
)]
async fn issue_key(
    commands: web::Data<ServiceAccountCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<ServiceAccountsWrite>,
    path: web::Path<String>,
    ValidJson(body): ValidJson<IssueKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    principal.require_step_up()?;
    let mut errors = Vec::new();
    let description = field(
        &mut errors,
        "description",
        ServiceAccountDescription::parse(&body.description),
    );
    let scope = body.scope.map(|names| {
        names
            .iter()
            .enumerate()
            .filter_map(|(index, name)| {
                field(
                    &mut errors,
                    &format!("scope[{index}]"),
                    Permission::parse(name),
                )
            })
            .collect::<BTreeSet<Permission>>()
    });
    let (Some(description), true) = (description, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let request = KeyRequest {
        description,
        scope,
        expires_at: body.expires_at,
    };
    let issued = commands
        .issue_key(&context, Some(&principal.actor()), id, request)
        .await?;
    Ok(HttpResponse::Created().json(key_issued(id, issued)))
}

#[utoipa::path(
    post,
    path = "/v1/service-accounts/{id}/keys/{key_id}/rotate",
    tag = "service-accounts",
    security(("bearer" = [])),
    request_body(content = RotateKeyRequest, description = "Optional"),
    params(("id" = Uuid, Path), ("key_id" = Uuid, Path)),
    responses(
        (status = 201, description = "A new key of the same scope, shown this once; the old one works until the overlap ends", body = KeyIssued),
        (status = 401, description = "No valid access token, or (`step-up-required`) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs service_accounts:write, every permission the account holds and the key's scope", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown account, or a key revoked, replaced or unknown", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The account is disabled", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`overlap_seconds` out of range", body = Problem, content_type = PROBLEM),
    )
)]
async fn rotate_key(
    commands: web::Data<ServiceAccountCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<ServiceAccountsWrite>,
    path: web::Path<(String, String)>,
    OptionalJson(body): OptionalJson<RotateKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let (id, key_id) = account_and(&path, "API key")?;
    principal.require_step_up()?;
    let body = body.unwrap_or_default();
    let overlap = body.overlap_seconds.map(TimeDelta::seconds);
    let issued = commands
        .rotate_key(&context, &principal.actor(), id, key_id, overlap)
        .await?;
    Ok(HttpResponse::Created().json(key_issued(id, issued)))
}

#[utoipa::path(
    delete,
    path = "/v1/service-accounts/{id}/keys/{key_id}",
    tag = "service-accounts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("key_id" = Uuid, Path)),
    responses(
        (status = 200, description = "Revoked: every process refuses it, and the tokens granted to it, at once", body = CommandAccepted),
        (status = 403, description = "Needs service_accounts:write and every permission the account holds", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown account, or a key revoked, replaced or unknown", body = Problem, content_type = PROBLEM),
    )
)]
async fn revoke_key(
    commands: web::Data<ServiceAccountCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<ServiceAccountsWrite>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, key_id) = account_and(&path, "API key")?;
    let position = commands
        .revoke_key(&context, &principal.actor(), id, key_id)
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted::new(id, position)))
}

fn key_issued(service_account_id: Uuid, issued: IssuedApiKey) -> KeyIssued {
    KeyIssued {
        service_account_id,
        key_id: issued.key.key_id(),
        key: issued.key.expose().to_owned(),
        scope: issued.scope.iter().map(|p| p.as_str().to_owned()).collect(),
        expires_at: issued.expires_at,
        position: issued.position,
    }
}

fn account_view(row: ServiceAccountRow) -> ServiceAccountView {
    ServiceAccountView {
        id: row.service_account_id,
        name: row.name,
        description: row.description,
        status: row.status,
        roles: row.roles,
        role_ids: row.role_ids,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn key_view(row: ApiKeyRow) -> ApiKeyView {
    ApiKeyView {
        key_id: row.key_id,
        description: row.description,
        scope: row.scope,
        issued_at: row.issued_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
        replaced_by: row.replaced_by,
        last_used_at: row.last_used_at,
        last_used_from: row.last_used_from,
    }
}

fn account_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound("service account"))
}

/// The account and the second id of the path, which names `what`.
fn account_and(path: &(String, String), what: &'static str) -> Result<(Uuid, Uuid), ApiError> {
    let id = account_id(&path.0)?;
    let other = Uuid::parse_str(&path.1).map_err(|_| ApiError::NotFound(what))?;
    Ok((id, other))
}
