//! `/v1/auth`: login, refresh, logout and the current session; and the
//! public keys at `/.well-known/jwks.json`. A login asks for tokens (the
//! default) or for the session in cookies (browsers); refresh and logout
//! work on either.

use actix_governor::Governor;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use domain::RevocationReason;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::principal::EndingSession;
use crate::auth::{cookies, csrf, Principal};
use crate::extract::{has_body, RequestContext, ValidJson};
use crate::freshness::Freshness;
use crate::problem::{ApiError, Problem, PROBLEM};
use crate::rate_limit::AuthRateLimit;
use crate::user_queries::{self, UserView};
use app::second_factors::policy::SecondFactorPolicy;
use app::second_factors::recovery_code::RecoveryCode;
use app::second_factors::{Proof, SecondFactorService};
use app::sign_in::{Login, SignIn};
use app::tokens::AccessTokens;

/// What login and refresh hand to a client that asked for tokens.
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

/// What a new or refreshed session answers, as the client asked for it
/// (for the OpenAPI document: a generated client decodes either).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum SessionAnswer {
    Tokens(TokenPair),
    Cookie(CookieSession),
}

/// What login answers: a session, or a second step to take.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum LoginAnswer {
    Tokens(TokenPair),
    Cookie(CookieSession),
    SecondFactor(SecondFactorChallenge),
}

/// What login and refresh answer when the session is in cookies: no token.
#[derive(Serialize, ToSchema)]
pub struct CookieSession {
    session_id: uuid::Uuid,
    /// Seconds until the access cookie expires; refresh before.
    expires_in: i64,
    /// The session's absolute end.
    session_expires_at: DateTime<Utc>,
}

impl CookieSession {
    /// The answer, with both cookies set.
    fn response(tokens: &app::sign_in::TokenPair) -> HttpResponse {
        let mut response = HttpResponse::Ok();
        cookies::set_session(&mut response, tokens);
        response.json(Self {
            session_id: tokens.session_id,
            expires_in: tokens.expires_in,
            session_expires_at: tokens.session_expires_at,
        })
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
        web::resource("/auth/login/second-factor")
            .wrap(Governor::new(rate_limit))
            .route(web::post().to(login_second_factor))
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
    )
    .service(
        web::resource("/auth/step-up/passkey")
            .route(web::post().to(begin_passkey_step_up))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/auth/step-up")
            .wrap(Governor::new(rate_limit))
            .route(web::post().to(step_up))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/auth/session")
            .route(web::get().to(current_session))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// Where the new session goes.
#[derive(Deserialize, ToSchema, Default, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    /// Access and refresh tokens in the body (the default).
    #[default]
    Tokens,
    /// `__Host-` cookies (HttpOnly, Secure, SameSite=Strict), no token in the body.
    Cookie,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
    #[serde(default)]
    session: SessionMode,
}

#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "A new session: tokens, or (`\"session\": \"cookie\"`) the session cookies and no token. For an account with a second factor, no session yet but a `SecondFactorChallenge` (`second_factor_required: true`) for `POST /v1/auth/login/second-factor`", body = LoginAnswer,
            headers(("Set-Cookie" = String, description = "With `\"session\": \"cookie\"`: `__Host-access_token` and `__Host-refresh_token`"))),
        (status = 401, description = "Wrong email or password, or the account cannot sign in (one answer for all)", body = Problem, content_type = PROBLEM),
        (status = 403, description = "A cookie login from another origin (CSRF check)", body = Problem, content_type = PROBLEM),
        (status = 429, description = "Rate limit or blocked address; see Retry-After", body = Problem, content_type = PROBLEM),
        (status = 503, description = "Password hashing queue full; see Retry-After", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn login(
    req: HttpRequest,
    sign_in: web::Data<SignIn>,
    context: RequestContext,
    ValidJson(body): ValidJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    if body.session == SessionMode::Cookie {
        // Else another site could sign a visitor in to the attacker's account.
        csrf::check(&req)?;
    }
    match sign_in.login(&context, &body.email, body.password).await? {
        Login::Tokens(tokens) => Ok(session_response(body.session, tokens)),
        Login::SecondFactorRequired {
            challenge,
            expires_in,
        } => Ok(HttpResponse::Ok().json(SecondFactorChallenge {
            second_factor_required: true,
            methods: challenge.methods,
            passkey: challenge.passkey,
            challenge: challenge.challenge,
            expires_in,
        })),
    }
}

/// The new session as the client asked for it.
fn session_response(mode: SessionMode, tokens: app::sign_in::TokenPair) -> HttpResponse {
    match mode {
        SessionMode::Tokens => HttpResponse::Ok().json(TokenPair::from(tokens)),
        SessionMode::Cookie => CookieSession::response(&tokens),
    }
}

/// The first step's answer for an account with a second factor: no token
/// yet. The second step (`POST /v1/auth/login/second-factor`) presents
/// the challenge with a code.
#[derive(Serialize, ToSchema)]
pub struct SecondFactorChallenge {
    /// Always true.
    second_factor_required: bool,
    /// Single-use; give it to the second step.
    challenge: String,
    /// Seconds the challenge stays valid.
    expires_in: i64,
    /// What the second step takes, of the factors the person has: `totp`
    /// (`code`), `passkey` and `recovery_code`.
    methods: Vec<&'static str>,
    /// With a passkey: the options for `navigator.credentials.get`
    /// (`{"publicKey": …}`, base64url for binary values, as
    /// `PublicKeyCredential.parseRequestOptionsFromJSON` reads them).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    passkey: Option<serde_json::Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorLoginRequest {
    challenge: String,
    /// The authenticator app's six digits; or give `recovery_code`.
    #[schema(pattern = "^\\s*([0-9]\\s*){6}$", nullable = false)]
    code: Option<String>,
    /// One of the recovery codes (`abcd-efgh-ijkl-mnop`), used up.
    #[schema(
        pattern = "^([-\\sA-Za-z2-7]*[A-Za-z2-7]){16}[-\\s]*$",
        nullable = false
    )]
    recovery_code: Option<String>,
    /// The passkey's assertion for the first step's `passkey` options, as
    /// `PublicKeyCredential.toJSON()` gives it.
    #[schema(value_type = Option<Object>)]
    passkey: Option<serde_json::Value>,
    #[serde(default)]
    session: SessionMode,
}

#[utoipa::path(
    post,
    path = "/v1/auth/login/second-factor",
    tag = "auth",
    request_body = SecondFactorLoginRequest,
    responses(
        (status = 200, description = "A new session, as from login: tokens, or (`\"session\": \"cookie\"`) the session cookies", body = SessionAnswer),
        (status = 401, description = "A challenge unknown, used or expired, or a wrong code (one answer for all; a wrong code counts toward the lockout)", body = Problem, content_type = PROBLEM),
        (status = 403, description = "`\"session\": \"cookie\"` from another origin (CSRF check)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Not exactly one of `code`, `recovery_code` and `passkey`, or a malformed one (named)", body = Problem, content_type = PROBLEM),
        (status = 429, description = "Rate limit or blocked address; see Retry-After", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn login_second_factor(
    req: HttpRequest,
    sign_in: web::Data<SignIn>,
    context: RequestContext,
    ValidJson(body): ValidJson<SecondFactorLoginRequest>,
) -> Result<HttpResponse, ApiError> {
    if body.session == SessionMode::Cookie {
        csrf::check(&req)?;
    }
    let proof = proof(
        body.code.as_deref(),
        body.recovery_code.as_deref(),
        body.passkey,
    )?;
    let tokens = sign_in.complete(&context, &body.challenge, &proof).await?;
    Ok(session_response(body.session, tokens))
}

/// Exactly one of an authenticator app's code, a recovery code and a
/// passkey's assertion.
fn proof(
    code: Option<&str>,
    recovery_code: Option<&str>,
    passkey: Option<serde_json::Value>,
) -> Result<Proof, ApiError> {
    match (code, recovery_code, passkey) {
        (Some(code), None, None) => Ok(Proof::Code(
            domain::TotpCode::parse(code).map_err(|error| ApiError::invalid("code", error))?,
        )),
        (None, Some(code), None) => Ok(Proof::RecoveryCode(
            RecoveryCode::parse(code)
                .ok_or_else(|| ApiError::invalid("recovery_code", "is not a recovery code"))?,
        )),
        (None, None, Some(passkey)) if passkey.is_object() => Ok(Proof::Passkey(passkey)),
        (None, None, Some(_)) => Err(ApiError::invalid(
            "passkey",
            "must be an object: PublicKeyCredential.toJSON()",
        )),
        _ => Err(ApiError::invalid(
            "code",
            "give exactly one of code, recovery_code and passkey",
        )),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    /// The authenticator app's six digits; or give `recovery_code`, or
    /// `passkey` with `ceremony`.
    #[schema(pattern = "^\\s*([0-9]\\s*){6}$", nullable = false)]
    code: Option<String>,
    /// One of the recovery codes (`abcd-efgh-ijkl-mnop`), used up.
    #[schema(
        pattern = "^([-\\sA-Za-z2-7]*[A-Za-z2-7]){16}[-\\s]*$",
        nullable = false
    )]
    recovery_code: Option<String>,
    /// A passkey's assertion for the options `POST /v1/auth/step-up/passkey`
    /// answered, as `PublicKeyCredential.toJSON()` gives it.
    #[schema(value_type = Option<Object>)]
    passkey: Option<serde_json::Value>,
    /// The `ceremony` that answer named.
    ceremony: Option<String>,
}

/// A passkey step-up begun: answer the options, then send the assertion
/// with the ceremony to `POST /v1/auth/step-up`.
#[derive(Serialize, ToSchema)]
pub struct PasskeyStepUp {
    /// Single-use, valid for 5 minutes.
    ceremony: String,
    /// For `navigator.credentials.get` (`{"publicKey": …}`).
    #[schema(value_type = Object)]
    passkey: serde_json::Value,
}

#[utoipa::path(
    post,
    path = "/v1/auth/step-up/passkey",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A step-up with a passkey begun: the options for the browser and the ceremony to send back", body = PasskeyStepUp),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "The person has no passkey, or the caller is a machine", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn begin_passkey_step_up(
    factors: web::Data<SecondFactorService>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.session()?;
    let ceremony = factors
        .begin_passkey_step_up(principal.user_id)
        .await?
        .ok_or(ApiError::NotFound("passkey"))?;
    Ok(HttpResponse::Ok().json(PasskeyStepUp {
        ceremony: ceremony.handle,
        passkey: ceremony.options,
    }))
}

/// A step-up proved: a new access token that says so. A session in
/// cookies gets it as its access cookie instead, and no token here.
#[derive(Serialize, ToSchema)]
pub struct SteppedUp {
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    /// `Bearer`, with an `access_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    /// Seconds until the access token (or cookie) expires.
    expires_in: i64,
    /// Seconds for which sensitive commands now run without another step-up.
    step_up_valid_for: i64,
}

#[utoipa::path(
    post,
    path = "/v1/auth/step-up",
    tag = "auth",
    security(("bearer" = [])),
    request_body = StepUpRequest,
    responses(
        (status = 200, description = "The second factor is proved in this session (`second_factor.verified`): sensitive commands run for `step_up_valid_for` seconds; a new access token (or cookie) carries `amr` and `auth_time`", body = SteppedUp,
            headers(("Set-Cookie" = String, description = "For a session in cookies: a new `__Host-access_token`"))),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 404, description = "The person has no second factor, or the caller is a machine", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A wrong or malformed code, or neither or both of `code` and `recovery_code` (named; a wrong code counts toward the lockout)", body = Problem, content_type = PROBLEM),
        (status = 429, description = "Rate limit or blocked address; see Retry-After", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn step_up(
    req: HttpRequest,
    sign_in: web::Data<SignIn>,
    policy: web::Data<SecondFactorPolicy>,
    context: RequestContext,
    principal: Principal,
    ValidJson(body): ValidJson<StepUpRequest>,
) -> Result<HttpResponse, ApiError> {
    let session = principal.session()?;
    let proof = proof(
        body.code.as_deref(),
        body.recovery_code.as_deref(),
        body.passkey,
    )?;
    let access = sign_in
        .step_up(
            &context,
            (principal.user_id, session.id),
            &proof,
            body.ceremony.as_deref(),
        )
        .await?;
    let step_up_valid_for = policy.step_up_max_age.num_seconds();
    if cookies::in_cookie(&req) {
        let mut response = HttpResponse::Ok();
        cookies::set_access(&mut response, &access.token, access.expires_in);
        return Ok(response.json(SteppedUp {
            access_token: None,
            token_type: None,
            expires_in: access.expires_in,
            step_up_valid_for,
        }));
    }
    Ok(HttpResponse::Ok().json(SteppedUp {
        access_token: Some(access.token),
        token_type: Some("Bearer"),
        expires_in: access.expires_in,
        step_up_valid_for,
    }))
}

/// Without a body, the refresh cookie is the token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    tag = "auth",
    request_body(content = RefreshRequest, description = "The refresh token; none (no body at all) to refresh the session in cookies"),
    responses(
        (status = 200, description = "New tokens (or new cookies and no token, for a cookie session); the presented refresh token is dead", body = SessionAnswer),
        (status = 401, description = "Unknown, rotated (the session is then revoked) or expired refresh token, or neither a body nor the refresh cookie", body = Problem, content_type = PROBLEM),
        (status = 403, description = "A cookie refresh from another origin (CSRF check)", body = Problem, content_type = PROBLEM),
        (status = 409, description = "A concurrent refresh of the same session", body = Problem, content_type = PROBLEM),
        (status = 429, description = "Rate limit; see Retry-After", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn refresh(
    req: HttpRequest,
    payload: web::Payload,
    sign_in: web::Data<SignIn>,
    context: RequestContext,
) -> Result<HttpResponse, ApiError> {
    if !has_body(&req) && req.cookie(cookies::REFRESH_COOKIE).is_none() {
        return Err(ApiError::Unauthorized);
    }
    if let Some(cookie) = refresh_cookie_without_body(&req) {
        csrf::check(&req)?;
        return Ok(match sign_in.refresh(&context, cookie.value()).await {
            Ok(tokens) => CookieSession::response(&tokens),
            Err(error) => {
                let mut refused = ApiError::from(error).error_response();
                forget_session_cookies(&mut refused);
                refused
            }
        });
    }
    let ValidJson(body) =
        ValidJson::<RefreshRequest>::from_request(&req, &mut payload.into_inner()).await?;
    let tokens = sign_in.refresh(&context, &body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(TokenPair::from(tokens)))
}

/// The refresh cookie, when the request has no body (and so no token of its own).
fn refresh_cookie_without_body(req: &HttpRequest) -> Option<actix_web::cookie::Cookie<'static>> {
    if has_body(req) {
        return None;
    }
    req.cookie(cookies::REFRESH_COOKIE)
}

fn forget_session_cookies(response: &mut HttpResponse) {
    let mut builder = HttpResponse::Ok();
    cookies::clear_session(&mut builder);
    for cookie in builder.finish().cookies() {
        let _ = response.add_cookie(&cookie);
    }
}

#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The session of this access token (or cookie) has ended; the session cookies are cleared"),
    )
)]
pub async fn logout(
    sign_in: web::Data<SignIn>,
    context: RequestContext,
    EndingSession(principal): EndingSession,
) -> Result<HttpResponse, ApiError> {
    sign_in
        .end_session(
            &context,
            principal.user_id,
            principal.session()?.id,
            RevocationReason::LoggedOut,
        )
        .await?;
    let mut response = HttpResponse::NoContent();
    cookies::clear_session(&mut response);
    Ok(response.finish())
}

/// The caller's session.
#[derive(Serialize, ToSchema)]
pub struct CurrentSession {
    user: UserView,
    session_id: uuid::Uuid,
    /// When the session ends unless refreshed (the earlier of its absolute
    /// and idle deadlines).
    expires_at: DateTime<Utc>,
    /// Whether sensitive commands need a step-up first (`POST /v1/auth/step-up`).
    step_up_required: bool,
}

#[utoipa::path(
    get,
    path = "/v1/auth/session",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed-in user and when the session ends", body = CurrentSession),
    )
)]
pub async fn current_session(
    pool: web::Data<sqlx::PgPool>,
    freshness: web::Data<Freshness>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let session = principal.session()?;
    let (user, _) = user_queries::find_own(&pool, &freshness, principal.user_id).await?;
    let user = user.ok_or(ApiError::Unauthorized)?;
    Ok(HttpResponse::Ok().json(CurrentSession {
        user,
        session_id: session.id,
        expires_at: session.ends_at,
        step_up_required: principal.require_step_up().is_err(),
    }))
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    responses((status = 200, description = "The public keys that verify access tokens (RFC 7517); cacheable for 5 minutes", body = serde_json::Value))
)]
pub async fn jwks(tokens: web::Data<AccessTokens>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(tokens.keys().jwks())
}
