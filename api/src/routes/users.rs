//! `/v1/users`: commands write events; queries read `users_view` only.
//! Until authorization lands, every route here is open (see README).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use domain::{DisplayName, Email, Password, UserCommand, UserStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::extract::{RequestContext, ValidJson, ValidQuery};
use crate::freshness::Freshness;
use crate::problem::{ApiError, FieldError, Problem};
use crate::user_commands::UserCommands;
use crate::user_queries::{self, UserFilter, UserView};

pub const PROJECTION_POSITION: &str = "Projection-Position";
const PROBLEM: &str = "application/problem+json";
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 200;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/users")
            .route(web::post().to(register))
            .route(web::get().to(list))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/users/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update_profile))
            .default_service(web::to(super::method_not_allowed)),
    )
    .route("/users/{id}/deactivate", web::post().to(deactivate))
    .route("/users/{id}/reactivate", web::post().to(reactivate));
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    email: String,
    password: String,
    display_name: String,
}

/// Give `email`, `display_name` or both; both change in one command or neither.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileRequest {
    email: Option<String>,
    display_name: Option<String>,
}

/// `position`: the global position of the command's last event, for `min_position`.
#[derive(Serialize, ToSchema)]
pub struct CommandAccepted {
    id: Uuid,
    position: i64,
}

#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered; Location names the user", body = CommandAccepted),
        (status = 400, description = "Malformed JSON or unknown field", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Email in use", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = PROBLEM),
        (status = 415, description = "Not JSON", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field breaks a rule", body = Problem, content_type = PROBLEM),
    )
)]
async fn register(
    commands: web::Data<UserCommands>,
    context: RequestContext,
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
        .register(&context, email, display_name, password)
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
    responses(
        (status = 200, body = CommandAccepted),
        (status = 400, description = "Malformed JSON or unknown field", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown user", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Email in use, user deactivated, or a concurrent change", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field breaks a rule", body = Problem, content_type = PROBLEM),
    )
)]
async fn update_profile(
    commands: web::Data<UserCommands>,
    context: RequestContext,
    id: web::Path<String>,
    ValidJson(body): ValidJson<UpdateProfileRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&id)?;
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
        .update_profile(&context, id, email.flatten(), display_name.flatten())
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted { id, position }))
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/deactivate",
    tag = "users",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = CommandAccepted),
        (status = 404, description = "Unknown user", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Already deactivated", body = Problem, content_type = PROBLEM),
    )
)]
async fn deactivate(
    commands: web::Data<UserCommands>,
    context: RequestContext,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    change_status(&commands, &context, &id, UserCommand::Deactivate).await
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/reactivate",
    tag = "users",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = CommandAccepted),
        (status = 404, description = "Unknown user", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Already active", body = Problem, content_type = PROBLEM),
    )
)]
async fn reactivate(
    commands: web::Data<UserCommands>,
    context: RequestContext,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    change_status(&commands, &context, &id, UserCommand::Reactivate).await
}

async fn change_status(
    commands: &UserCommands,
    context: &RequestContext,
    id: &str,
    command: UserCommand,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(id)?;
    let position = commands.execute(context, id, command).await?;
    Ok(HttpResponse::Ok().json(CommandAccepted { id, position }))
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
    responses(
        (status = 200, description = "The user; header Projection-Position", body = UserView),
        (status = 400, description = "Bad query parameter", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown user", body = Problem, content_type = PROBLEM),
        (status = 504, description = "min_position not reached in time", body = Problem, content_type = PROBLEM),
    )
)]
async fn get(
    pool: web::Data<sqlx::PgPool>,
    freshness: web::Data<Freshness>,
    id: web::Path<String>,
    ValidQuery(params): ValidQuery<GetParams>,
) -> Result<HttpResponse, ApiError> {
    let min_position = min_position(params.min_position.as_deref())?;
    let id = user_id(&id)?;
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
    /// `active` or `deactivated`.
    status: Option<String>,
    /// Exact address, in any case.
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
    responses(
        (status = 200, description = "A page; header Projection-Position", body = Page),
        (status = 400, description = "Bad query parameter", body = Problem, content_type = PROBLEM),
        (status = 504, description = "min_position not reached in time", body = Problem, content_type = PROBLEM),
    )
)]
async fn list(
    pool: web::Data<sqlx::PgPool>,
    freshness: web::Data<Freshness>,
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
        email_key: params.email.map(|email| email.trim().to_lowercase()),
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

fn min_position(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
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

fn status_filter(raw: &str) -> Result<String, ApiError> {
    [UserStatus::Active, UserStatus::Deactivated]
        .into_iter()
        .find(|status| status.as_str() == raw)
        .map(|status| status.as_str().to_string())
        .ok_or_else(|| bad("status", "must be active or deactivated"))
}
