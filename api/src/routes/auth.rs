//! `/v1/auth`: login, refresh and logout; and the public keys at
//! `/.well-known/jwks.json`.

use actix_governor::Governor;
use actix_web::{web, HttpResponse};
use domain::RevocationReason;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::extract::{RequestContext, ValidJson};
use crate::problem::{ApiError, Problem, PROBLEM};
use crate::rate_limit::AuthRateLimit;
use app::sign_in::SignIn;
use app::tokens::AccessTokens;

/// What login and refresh hand to the client.
#[derive(Serialize, ToSchema)]
pub struct TokenPair {
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: i64,
    refresh_token: String,
    session_id: uuid::Uuid,
}

impl From<app::sign_in::TokenPair> for TokenPair {
    fn from(tokens: app::sign_in::TokenPair) -> Self {
        Self {
            access_token: tokens.access_token,
            token_type: "Bearer",
            expires_in: tokens.expires_in,
            refresh_token: tokens.refresh_token,
            session_id: tokens.session_id,
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig, rate_limit: &AuthRateLimit) {
    cfg.service(
        web::resource("/auth/login")
            .wrap(Governor::new(rate_limit))
            .route(web::post().to(login))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/auth/refresh")
            .wrap(Governor::new(rate_limit))
            .route(web::post().to(refresh))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/auth/logout")
            .route(web::post().to(logout))
            .default_service(web::to(super::method_not_allowed)),
    );
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "A new session", body = TokenPair),
        (status = 400, description = "Malformed JSON or unknown field", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Wrong email or password, or the account cannot sign in (one answer for all)", body = Problem, content_type = PROBLEM),
        (status = 429, description = "Rate limit or blocked address; see Retry-After", body = Problem, content_type = PROBLEM),
        (status = 503, description = "Password hashing queue full; see Retry-After", body = Problem, content_type = PROBLEM),
    )
)]
async fn login(
    sign_in: web::Data<SignIn>,
    context: RequestContext,
    ValidJson(body): ValidJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = sign_in.login(&context, &body.email, body.password).await?;
    Ok(HttpResponse::Ok().json(TokenPair::from(tokens)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens; the presented refresh token is dead", body = TokenPair),
        (status = 401, description = "Unknown, rotated (the session is then revoked) or expired refresh token", body = Problem, content_type = PROBLEM),
        (status = 409, description = "A concurrent refresh of the same session", body = Problem, content_type = PROBLEM),
        (status = 429, description = "Rate limit; see Retry-After", body = Problem, content_type = PROBLEM),
    )
)]
async fn refresh(
    sign_in: web::Data<SignIn>,
    context: RequestContext,
    ValidJson(body): ValidJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = sign_in.refresh(&context, &body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(TokenPair::from(tokens)))
}

#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The session of this access token has ended"),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
    )
)]
async fn logout(
    sign_in: web::Data<SignIn>,
    context: RequestContext,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    sign_in
        .end_session(
            &context,
            principal.user_id,
            principal.session_id,
            RevocationReason::LoggedOut,
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The public keys that verify access tokens (RFC 7517).
pub async fn jwks(tokens: web::Data<AccessTokens>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(tokens.keys().jwks())
}
