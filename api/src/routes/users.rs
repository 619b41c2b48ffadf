//! `/v1/users`: commands write events; queries read `users_view` only.
//! Authorization happens in the extractors: a user reads and edits their own
//! profile; anything else needs the permission named in the extractor's type.

use actix_governor::Governor;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use domain::{DisplayName, Email, Password, UserStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::principal::{carries_credentials, Needs, RolesWrite, UsersRead, UsersWrite};
use crate::auth::{Allowed, Principal, SelfOr};
use crate::extract::{RequestContext, ValidJson, ValidQuery};
use crate::freshness::Freshness;
use crate::problem::{ApiError, FieldError, Problem, PROBLEM};
use crate::rate_limit::{AddressRateLimit, AuthRateLimit};
use crate::settings::SignupMode;
use crate::user_queries::{self, UserFilter, UserView};
use app::users::{PasswordChangeBy, Registrant, UserCommands};

pub const PROJECTION_POSITION: &str = "Projection-Position";
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 200;

/// `rate_limit` throttles the password change per client address like
/// login: a wrong current password is a guess at the password.
pub fn configure(cfg: &mut web::ServiceConfig, rate_limit: &AuthRateLimit) {
    cfg.service(
        web::resource("/users")
            .route(web::post().to(register))
            .route(web::get().to(list))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/users/me")
            .route(web::get().to(me))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/users/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update_profile))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(single_route(
        "/users/{id}/deactivate",
        web::post().to(deactivate),
    ))
    .service(single_route(
        "/users/{id}/reactivate",
        web::post().to(reactivate),
    ))
    .service(single_route("/users/{id}/unlock", web::post().to(unlock)))
    .service(single_route("/users/{id}/erase", web::post().to(erase)))
    .service(
        web::resource("/users/{id}/password")
            .wrap(Governor::new(rate_limit))
            .route(web::post().to(change_password))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(single_route(
        "/users/{id}/roles",
        web::post().to(assign_role),
    ))
    .service(single_route(
        "/users/{id}/roles/{role_id}",
        web::delete().to(unassign_role),
    ));
}

/// A path served by one route; any other method is a 405.
fn single_route(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(super::method_not_allowed))
}

/// Who registers a user: a caller holding `users:write`, recorded as the
/// actor and limited like any command of theirs; otherwise, when sign-up is
/// open, anyone, as a sign-up limited per client address like login. A
/// request that carries a token is authenticated first, so a bad token is
/// a 401 and not a way around either limit.
pub struct Registrar(Registrant);

impl actix_web::FromRequest for Registrar {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let mode = req
                .app_data::<web::Data<SignupMode>>()
                .map_or(SignupMode::Closed, |mode| *mode.get_ref());
            let open = mode == SignupMode::Open;
            if open && !carries_credentials(&req) {
                return sign_up(&req);
            }
            let principal = Principal::authenticate(&req).await?;
            if principal.has(domain::Permission::UsersWrite) {
                return Ok(Self(Registrant::Administrator {
                    actor_id: principal.user_id,
                    api_key_id: principal.api_key_id,
                }));
            }
            if open {
                return sign_up(&req);
            }
            Err(ApiError::Forbidden(domain::Permission::UsersWrite.as_str()))
        })
    }
}

fn sign_up(req: &actix_web::HttpRequest) -> Result<Registrar, ApiError> {
    let limit = req
        .app_data::<web::Data<AddressRateLimit>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("AddressRateLimit not configured")))?;
    limit.check(req)?;
    Ok(Registrar(Registrant::SignUp))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Trimmed; at most 254 characters, a dotted domain.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// 12 to 128 characters, not a common password, not trivially repetitive or sequential.
    #[schema(min_length = 12, max_length = 128)]
    password: String,
    /// Trimmed, 1 to 100 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*\S[^\x00-\x1F\x7F-\x9F]*$"
    )]
    display_name: String,
}

/// Give `email`, `display_name` or both; both change in one command or neither.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateProfileRequest {
    #[schema(format = Email, max_length = 254, nullable = false)]
    email: Option<String>,
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*\S[^\x00-\x1F\x7F-\x9F]*$"
    )]
    display_name: Option<String>,
}

/// `position`: the global position of the command's last event, for `min_position`.
#[derive(Serialize, ToSchema)]
pub struct CommandAccepted {
    id: Uuid,
    position: i64,
}

impl CommandAccepted {
    pub fn new(id: Uuid, position: i64) -> Self {
        Self { id, position }
    }
}

#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    request_body = RegisterRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered; Location names the user", body = CommandAccepted),
        (status = 401, description = "Closed sign-up (SIGNUP_MODE=closed) and no valid access token, or a token sent that is not valid", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Closed sign-up and the caller lacks users:write", body = Problem, content_type = PROBLEM),
        (status = 400, description = "Malformed JSON or unknown field", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Email in use; on a sign-up, counted toward the address's block", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = PROBLEM),
        (status = 415, description = "Not JSON", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field breaks a rule", body = Problem, content_type = PROBLEM),
        (status = 429, description = "A sign-up over the per-address rate limit or from a blocked address, or an administrator over their command limit; see Retry-After", body = Problem, content_type = PROBLEM),
    )
)]
async fn register(
    commands: web::Data<UserCommands>,
    context: RequestContext,
    Registrar(registrant): Registrar,
    ValidJson(body): ValidJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let email = validated("email", Email::parse(&body.email), &mut errors);
    let password = validated("password", Password::parse(&body.password), &mut errors);
    let display_name = validated(
        "display_name",
        DisplayName::parse(&body.display_name),
        &mut errors,
    );
    let (Some(email), Some(password), Some(display_name)) = (email, password, display_name) else {
        return Err(ApiError::Validation(errors));
    };
    let registered = commands
        .register(&context, registrant, email, display_name, password)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/users/{}", registered.user_id),
        ))
        .json(CommandAccepted {
            id: registered.user_id,
            position: registered.position,
        }))
}

#[utoipa::path(
    patch,
    path = "/v1/users/{id}",
    tag = "users",
    request_body = UpdateProfileRequest,
    params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed (both fields, or neither)", body = CommandAccepted),
        (status = 401, description = "No valid access token, or (`step-up-required`, for a new email) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Lacks the permission", body = Problem, content_type = PROBLEM),
        (status = 400, description = "Malformed JSON or unknown field", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown user", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Email in use, user deactivated, or a concurrent change", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field breaks a rule", body = Problem, content_type = PROBLEM),
    )
)]
async fn update_profile(
    commands: web::Data<UserCommands>,
    context: RequestContext,
    access: SelfOr<UsersWrite>,
    ValidJson(body): ValidJson<UpdateProfileRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = access.user_id;
    if body.email.is_some() {
        access.principal.require_step_up()?;
    }
    if body.email.is_none() && body.display_name.is_none() {
        return Err(ApiError::Validation(vec![
            FieldError::new("email", "give email, display_name or both"),
            FieldError::new("display_name", "give email, display_name or both"),
        ]));
    }
    let mut errors = Vec::new();
    let email = body
        .email
        .map(|email| validated("email", Email::parse(&email), &mut errors));
    let display_name = body
        .display_name
        .map(|name| validated("display_name", DisplayName::parse(&name), &mut errors));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let position = commands
        .update_profile(
            &context,
            &access.principal.actor(),
            id,
            email.flatten(),
            display_name.flatten(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted { id, position }))
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/deactivate",
    tag = "users",
    params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deactivated; all their sessions revoked", body = CommandAccepted),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Lacks the permission", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown user", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Already deactivated", body = Problem, content_type = PROBLEM),
    )
)]
async fn deactivate(
    commands: web::Data<UserCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<UsersWrite>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&id)?;
    let position = commands
        .deactivate(&context, &principal.actor(), id)
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted { id, position }))
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/reactivate",
    tag = "users",
    params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Reactivated", body = CommandAccepted),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Lacks the permission", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown user", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Already active", body = Problem, content_type = PROBLEM),
    )
)]
async fn reactivate(
    commands: web::Data<UserCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<UsersWrite>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&id)?;
    let position = commands
        .reactivate(&context, &principal.actor(), id)
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted { id, position }))
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/unlock",
    tag = "users",
    params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Unlocked before the lock's end", body = CommandAccepted),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs users:write", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown user", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The user is not locked", body = Problem, content_type = PROBLEM),
    )
)]
async fn unlock(
    commands: web::Data<UserCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<UsersWrite>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&id)?;
    let position = commands.unlock(&context, &principal.actor(), id).await?;
    Ok(HttpResponse::Ok().json(CommandAccepted { id, position }))
}

/// `users:erase`, for [`Allowed`].
pub struct UsersErase;

impl Needs for UsersErase {
    const PERMISSION: domain::Permission = domain::Permission::UsersErase;
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/erase",
    tag = "users",
    params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Erased (or erased already): the user's personal values in \
            the event store, read models and uniqueness claims read \"[erased]\", their sessions \
            are revoked and their email may be registered again", body = CommandAccepted),
        (status = 401, description = "No valid access token, or (`step-up-required`) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs users:erase, and every permission the user holds", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown user", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The last active user holding every permission, or a concurrent change", body = Problem, content_type = PROBLEM),
    )
)]
async fn erase(
    commands: web::Data<UserCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<UsersErase>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&id)?;
    principal.require_step_up()?;
    let position = commands.erase(&context, &principal.actor(), id).await?;
    Ok(HttpResponse::Ok().json(CommandAccepted { id, position }))
}

/// `current_password` is required when changing one's own password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    current_password: Option<String>,
    /// 12 to 128 characters, not a common password, not trivially repetitive or sequential.
    #[schema(min_length = 12, max_length = 128)]
    new_password: String,
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/password",
    tag = "users",
    security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Changed; the user's other sessions (all, when set by an administrator) are revoked", body = CommandAccepted),
        (status = 401, description = "No valid access token, or (`step-up-required`) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Another user's password without users:write", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The user is deactivated, or a concurrent change", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Weak new password, or a wrong or missing current_password", body = Problem, content_type = PROBLEM),
    )
)]
async fn change_password(
    commands: web::Data<UserCommands>,
    context: RequestContext,
    access: SelfOr<UsersWrite>,
    ValidJson(body): ValidJson<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    access.principal.require_step_up()?;
    let own = access.user_id == access.principal.user_id;
    let mut errors = Vec::new();
    let new_password = validated(
        "new_password",
        Password::parse(&body.new_password),
        &mut errors,
    );
    if own && body.current_password.is_none() {
        errors.push(FieldError::new(
            "current_password",
            "is required to change your own password",
        ));
    }
    let (Some(new_password), true) = (new_password, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let by = match body.current_password.filter(|_| own) {
        Some(current_password) => PasswordChangeBy::Owner {
            current_password,
            session_id: access.principal.session()?.id,
        },
        None => PasswordChangeBy::Administrator,
    };
    let position = commands
        .change_password(
            &context,
            &access.principal.actor(),
            access.user_id,
            new_password,
            by,
        )
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted {
        id: access.user_id,
        position,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRoleRequest {
    role_id: Uuid,
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/roles",
    tag = "users",
    security(("bearer" = [])),
    request_body = AssignRoleRequest,
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Assigned (or already held)", body = CommandAccepted),
        (status = 401, description = "No valid access token, or (`step-up-required`) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs roles:write", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown user", body = Problem, content_type = PROBLEM),
        (status = 422, description = "role_id names no role", body = Problem, content_type = PROBLEM),
    )
)]
async fn assign_role(
    commands: web::Data<UserCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<RolesWrite>,
    id: web::Path<String>,
    ValidJson(body): ValidJson<AssignRoleRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&id)?;
    principal.require_step_up()?;
    let position = commands
        .assign_role(&context, &principal.actor(), id, body.role_id)
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted { id, position }))
}

#[utoipa::path(
    delete,
    path = "/v1/users/{id}/roles/{role_id}",
    tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("role_id" = Uuid, Path)),
    responses(
        (status = 200, description = "Unassigned", body = CommandAccepted),
        (status = 403, description = "Needs roles:write", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown user, or the user does not hold the role", body = Problem, content_type = PROBLEM),
    )
)]
async fn unassign_role(
    commands: web::Data<UserCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<RolesWrite>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&path.0)?;
    let role_id = Uuid::parse_str(&path.1).map_err(|_| ApiError::NotFound("role assignment"))?;
    let position = commands
        .unassign_role(&context, &principal.actor(), id, role_id)
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted { id, position }))
}

#[utoipa::path(
    get,
    path = "/v1/users/me",
    tag = "users",
    security(("bearer" = [])),
    params(GetParams),
    responses(
        (status = 200, description = "The caller, with roles and permissions; header Projection-Position", body = Me),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
    )
)]
async fn me(
    pool: web::Data<sqlx::PgPool>,
    freshness: web::Data<Freshness>,
    principal: Principal,
    ValidQuery(params): ValidQuery<GetParams>,
) -> Result<HttpResponse, ApiError> {
    // A machine has no session, and no user to wait for.
    let session = principal.session()?;
    let applied = freshness
        .wait_for(min_position(params.min_position.as_deref())?)
        .await?;
    let (user, waited) = user_queries::find_own(&pool, &freshness, principal.user_id).await?;
    let user = user.ok_or(ApiError::NotFound("user"))?;
    let applied = waited.unwrap_or(applied);
    // Read after the wait, not taken from the principal (read before it):
    // the roles and the permissions shown are of the same moment.
    let grants = user_queries::grants(&pool, principal.user_id)
        .await
        .map_err(ApiError::internal)?;
    let permissions: std::collections::BTreeSet<domain::Permission> = grants
        .permissions
        .iter()
        .filter_map(|name| domain::Permission::parse(name).ok())
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((PROJECTION_POSITION, applied.global_position))
        .json(Me {
            user,
            roles: grants.roles,
            permissions: permissions
                .iter()
                .map(|permission| permission.as_str().to_owned())
                .collect(),
            session_id: session.id,
        }))
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    #[serde(flatten)]
    user: UserView,
    roles: Vec<String>,
    permissions: Vec<String>,
    session_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetParams {
    /// Wait until the read model has applied this global position.
    #[param(value_type = Option<i64>, minimum = 0)]
    min_position: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path), GetParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user; header Projection-Position", body = UserView),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Lacks the permission", body = Problem, content_type = PROBLEM),
        (status = 400, description = "Bad query parameter", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown user", body = Problem, content_type = PROBLEM),
        (status = 504, description = "min_position not reached in time", body = Problem, content_type = PROBLEM),
    )
)]
async fn get(
    pool: web::Data<sqlx::PgPool>,
    freshness: web::Data<Freshness>,
    access: SelfOr<UsersRead>,
    ValidQuery(params): ValidQuery<GetParams>,
) -> Result<HttpResponse, ApiError> {
    let min_position = min_position(params.min_position.as_deref())?;
    let id = access.user_id;
    let applied = freshness.wait_for(min_position).await?;
    let user = user_queries::find(&pool, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::NotFound("user"))?;
    Ok(HttpResponse::Ok()
        .insert_header((PROJECTION_POSITION, applied.global_position))
        .json(user))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `active`, `deactivated` or `erased`.
    #[param(value_type = Option<crate::closed_sets::UserStatusName>, inline)]
    status: Option<String>,
    /// Exact address, in any case.
    #[param(format = Email, max_length = 254)]
    email: Option<String>,
    /// 1 to 200, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Wait until the read model has applied this global position.
    #[param(value_type = Option<i64>, minimum = 0)]
    min_position: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Page {
    items: Vec<UserView>,
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/users",
    tag = "users",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page; header Projection-Position", body = Page),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Lacks the permission", body = Problem, content_type = PROBLEM),
        (status = 400, description = "Bad query parameter", body = Problem, content_type = PROBLEM),
        (status = 504, description = "min_position not reached in time", body = Problem, content_type = PROBLEM),
    )
)]
async fn list(
    pool: web::Data<sqlx::PgPool>,
    freshness: web::Data<Freshness>,
    _: Allowed<UsersRead>,
    ValidQuery(params): ValidQuery<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let min_position = min_position(params.min_position.as_deref())?;
    let limit = page_limit(params.limit.as_deref())?;
    let after = params
        .cursor
        .as_deref()
        .map(|cursor| Uuid::parse_str(cursor).map_err(|_| bad("cursor", "is not a valid cursor")))
        .transpose()?;
    let filter = UserFilter {
        status: params.status.as_deref().map(status_filter).transpose()?,
        email_key: params.email.as_deref().map(email_key).transpose()?,
    };
    let applied = freshness.wait_for(min_position).await?;
    let mut items = user_queries::list(&pool, &filter, after, limit)
        .await
        .map_err(ApiError::internal)?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|user| user.id.to_string())
    } else {
        None
    };
    Ok(HttpResponse::Ok()
        .insert_header((PROJECTION_POSITION, applied.global_position))
        .json(Page { items, next_cursor }))
}

fn validated<T>(
    field: &str,
    parsed: Result<T, domain::ValidationError>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    parsed
        .map_err(|error| errors.push(FieldError::new(field, error)))
        .ok()
}

fn bad(field: &str, message: &str) -> ApiError {
    ApiError::BadRequest(vec![FieldError::new(field, message)])
}

/// An id that is not a UUID names no user.
fn user_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound("user"))
}

pub fn min_position(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    raw.map(|raw| match raw.parse::<i64>() {
        Ok(position) if position >= 0 => Ok(position),
        _ => Err(bad("min_position", "must be a non-negative integer")),
    })
    .transpose()
}

fn page_limit(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw.map(str::parse::<i64>) {
        None => Ok(DEFAULT_PAGE),
        Some(Ok(limit)) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        Some(_) => Err(bad("limit", "must be an integer from 1 to 200")),
    }
}

/// The canonical form: any way of writing the mailbox finds its accounts.
fn email_key(raw: &str) -> Result<String, ApiError> {
    Email::parse_existing(raw)
        .map(|email| email.uniqueness_key())
        .map_err(|error| bad("email", &error.to_string()))
}

fn status_filter(raw: &str) -> Result<String, ApiError> {
    UserStatus::ALL
        .into_iter()
        .find(|status| status.as_str() == raw)
        .map(|status| status.as_str().to_string())
        .ok_or_else(|| bad("status", "must be active, deactivated or erased"))
}
