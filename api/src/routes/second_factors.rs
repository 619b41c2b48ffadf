//! `/v1/users/{id}/second-factors`: a person's authenticator apps (TOTP),
//! passkeys (WebAuthn) and recovery codes. Enrolling, confirming and new recovery codes are the
//! person's own business, from a session of their own; reading needs
//! `users:read` for someone else, removing `users:write` and everything the
//! person holds (an administrator helping someone locked out).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use app::second_factors::recovery_code::RecoveryCode;
use app::second_factors::{FactorRow, SecondFactorService};
use chrono::{DateTime, Utc};
use domain::DisplayName;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::users::CommandAccepted;
use crate::auth::principal::{path_id, UsersRead, UsersWrite};
use crate::auth::{Principal, SelfOr};
use crate::extract::{RequestContext, ValidJson};
use crate::problem::{ApiError, Problem, PROBLEM};

pub fn configure(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| {
        web::resource(path.to_owned()).default_service(web::to(super::method_not_allowed))
    };
    cfg.service(resource("/users/{id}/second-factors").route(web::get().to(list)))
        .service(resource("/users/{id}/second-factors/totp").route(web::post().to(begin_totp)))
        .service(
            resource("/users/{id}/second-factors/passkeys").route(web::post().to(begin_passkey)),
        )
        .service(
            resource("/users/{id}/second-factors/passkeys/{ceremony}")
                .route(web::post().to(finish_passkey)),
        )
        .service(
            resource("/users/{id}/second-factors/{factor_id}/confirm")
                .route(web::post().to(confirm)),
        )
        .service(resource("/users/{id}/second-factors/{factor_id}").route(web::delete().to(remove)))
        .service(resource("/users/{id}/recovery-codes").route(web::post().to(recovery_codes)));
}

/// The secret is shown here only: put it into the authenticator app now.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrolmentView {
    factor_id: Uuid,
    /// Base32, to type into the app.
    secret: String,
    /// `otpauth://totp/…`, to show as a QR code.
    otpauth_uri: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// The app's current six digits.
    #[schema(pattern = "^\\s*([0-9]\\s*){6}$")]
    code: String,
}

/// The recovery codes are shown here only.
#[derive(Serialize, ToSchema)]
pub struct ConfirmedView {
    id: Uuid,
    position: i64,
    /// Ten one-time codes, when this is the person's first factor; else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_codes: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodesView {
    id: Uuid,
    position: i64,
    /// Ten one-time codes; every earlier one no longer works.
    recovery_codes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FactorView {
    factor_id: Uuid,
    /// `totp` or `passkey`.
    kind: String,
    /// A passkey's name; absent for an app.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// False while enrolment waits for its first code.
    enabled: bool,
    created_at: DateTime<Utc>,
    enabled_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct FactorList {
    items: Vec<FactorView>,
    recovery_codes_left: i64,
}

/// The person themself, from a session of their own (not a machine, not
/// someone else, whatever they hold).
fn own(principal: &Principal, user_id: Uuid) -> Result<(), ApiError> {
    principal.session()?;
    match principal.user_id == user_id {
        true => Ok(()),
        false => Err(ApiError::NotFound("user")),
    }
}

/// The person adding a factor to their own account: from their own
/// session and, when they have a factor already, having proved it
/// recently (a stolen session must not enrol the thief's). Their session.
fn adding_a_factor(principal: &Principal, user_id: Uuid) -> Result<Uuid, ApiError> {
    own(principal, user_id)?;
    principal.require_step_up()?;
    Ok(principal.session()?.id)
}

/// A passkey registration begun.
#[derive(Serialize, ToSchema)]
pub struct PasskeyRegistrationView {
    /// Single-use, valid for 5 minutes: the path of the second request.
    ceremony: String,
    /// For `navigator.credentials.create` (`{"publicKey": …}`, base64url
    /// for binary values, as `PublicKeyCredential.parseCreationOptionsFromJSON`
    /// reads them).
    #[schema(value_type = Object)]
    passkey: serde_json::Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishPasskeyRequest {
    /// The browser's answer, as `PublicKeyCredential.toJSON()` gives it.
    #[schema(value_type = Object)]
    credential: serde_json::Value,
    /// Up to 100 characters, to tell passkeys apart; default `passkey`.
    #[serde(default)]
    name: Option<String>,
}

/// A passkey registered; the recovery codes are shown here only.
#[derive(Serialize, ToSchema)]
pub struct PasskeyRegistered {
    id: Uuid,
    factor_id: Uuid,
    position: i64,
    /// Ten one-time codes, when this is the person's first factor; else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_codes: Option<Vec<String>>,
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/second-factors/passkeys",
    tag = "second-factors",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 201, description = "Registration begun: the options for the browser, and the ceremony that finishes it", body = PasskeyRegistrationView),
        (status = 401, description = "No valid access token, or (`step-up-required`) a person adding a factor beside one they have not proved recently", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Not the caller's own account", body = Problem, content_type = PROBLEM),
    )
)]
async fn begin_passkey(
    factors: web::Data<SecondFactorService>,
    principal: Principal,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let user_id = path_id(&req, "user")?;
    adding_a_factor(&principal, user_id)?;
    let ceremony = factors.begin_passkey(user_id).await?;
    Ok(HttpResponse::Created().json(PasskeyRegistrationView {
        ceremony: ceremony.handle,
        passkey: ceremony.options,
    }))
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/second-factors/passkeys/{ceremony}",
    tag = "second-factors",
    security(("bearer" = [])),
    request_body = FinishPasskeyRequest,
    params(("id" = Uuid, Path), ("ceremony" = String, Path)),
    responses(
        (status = 200, description = "Registered (`second_factor.passkey_registered`): logins now ask for a second factor; the first factor comes with recovery codes, shown once. The passkey is also proved in this session, as a step-up", body = PasskeyRegistered),
        (status = 401, description = "No valid access token, or (`step-up-required`) a person adding a factor beside one they have not proved recently", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Not the caller's own account, or no such ceremony waiting (unknown, used or older than 5 minutes)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`credential` malformed, registered already, or not verifying against the ceremony's challenge and origin; `name` too long", body = Problem, content_type = PROBLEM),
    )
)]
async fn finish_passkey(
    factors: web::Data<SecondFactorService>,
    context: RequestContext,
    principal: Principal,
    path: web::Path<(String, String)>,
    ValidJson(body): ValidJson<FinishPasskeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let user_id = Uuid::parse_str(&path.0).map_err(|_| ApiError::NotFound("user"))?;
    let session_id = adding_a_factor(&principal, user_id)?;
    // A passkey's name follows a display name's rules.
    let name = DisplayName::parse(body.name.as_deref().unwrap_or("passkey"))
        .map_err(|error| ApiError::invalid("name", error))?;
    let (factor_id, confirmed) = factors
        .finish_passkey(
            &context,
            &principal.actor(),
            (user_id, session_id),
            (&path.1, body.credential, name.as_str()),
        )
        .await?;
    Ok(HttpResponse::Ok().json(PasskeyRegistered {
        id: user_id,
        factor_id,
        position: confirmed.position,
        recovery_codes: confirmed.recovery_codes.map(|codes| shown(&codes)),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/second-factors/totp",
    tag = "second-factors",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 201, description = "Enrolment begun: the secret and its otpauth URI, shown once; confirm with a code", body = TotpEnrolmentView),
        (status = 401, description = "No valid access token, or (`step-up-required`) a person adding a factor beside one they have not proved recently", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Not the caller's own account", body = Problem, content_type = PROBLEM),
    )
)]
async fn begin_totp(
    factors: web::Data<SecondFactorService>,
    principal: Principal,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let user_id = path_id(&req, "user")?;
    adding_a_factor(&principal, user_id)?;
    let enrolment = factors.begin_totp(user_id).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/users/{user_id}/second-factors/{}", enrolment.factor_id),
        ))
        .json(TotpEnrolmentView {
            factor_id: enrolment.factor_id,
            secret: enrolment.secret,
            otpauth_uri: enrolment.otpauth_uri,
        }))
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/second-factors/{factor_id}/confirm",
    tag = "second-factors",
    security(("bearer" = [])),
    request_body = ConfirmRequest,
    params(("id" = Uuid, Path), ("factor_id" = Uuid, Path)),
    responses(
        (status = 200, description = "Enabled: logins now ask for a code; the first factor comes with recovery codes, shown once. The code also proves the factor in this session, as a step-up", body = ConfirmedView),
        (status = 401, description = "No valid access token, or (`step-up-required`) a person adding a factor beside one they have not proved recently", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Not the caller's own account, or no such enrolment waiting", body = Problem, content_type = PROBLEM),
        (status = 422, description = "`code` malformed, or not the app's current code", body = Problem, content_type = PROBLEM),
    )
)]
async fn confirm(
    factors: web::Data<SecondFactorService>,
    context: RequestContext,
    principal: Principal,
    path: web::Path<(String, String)>,
    ValidJson(body): ValidJson<ConfirmRequest>,
) -> Result<HttpResponse, ApiError> {
    let (user_id, factor_id) = user_and_factor(&path)?;
    let session_id = adding_a_factor(&principal, user_id)?;
    let code = domain::TotpCode::parse(&body.code).map_err(|e| ApiError::invalid("code", e))?;
    let confirmed = factors
        .confirm_totp(
            &context,
            &principal.actor(),
            (user_id, session_id),
            factor_id,
            code,
        )
        .await?;
    Ok(HttpResponse::Ok().json(ConfirmedView {
        id: user_id,
        position: confirmed.position,
        recovery_codes: confirmed.recovery_codes.map(|codes| shown(&codes)),
    }))
}

#[utoipa::path(
    get,
    path = "/v1/users/{id}/second-factors",
    tag = "second-factors",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The person's factors (never a secret) and how many recovery codes are left", body = FactorList),
        (status = 403, description = "Someone else's, without users:read", body = Problem, content_type = PROBLEM),
    )
)]
async fn list(
    factors: web::Data<SecondFactorService>,
    access: SelfOr<UsersRead>,
) -> Result<HttpResponse, ApiError> {
    let (rows, left) = factors.list(access.user_id).await?;
    Ok(HttpResponse::Ok().json(FactorList {
        items: rows.into_iter().map(factor_view).collect(),
        recovery_codes_left: left,
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/users/{id}/second-factors/{factor_id}",
    tag = "second-factors",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("factor_id" = Uuid, Path)),
    responses(
        (status = 200, description = "Removed (`second_factor.totp_removed`); an unconfirmed enrolment is only forgotten (position 0)", body = CommandAccepted),
        (status = 401, description = "No valid access token, or (`step-up-required`) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Someone else's, without users:write or a permission they hold", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such factor", body = Problem, content_type = PROBLEM),
    )
)]
async fn remove(
    factors: web::Data<SecondFactorService>,
    context: RequestContext,
    access: SelfOr<UsersWrite>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let factor_id = req
        .match_info()
        .get("factor_id")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or(ApiError::NotFound("second factor"))?;
    access.principal.require_step_up()?;
    let position = factors
        .remove(
            &context,
            &access.principal.actor(),
            access.user_id,
            factor_id,
        )
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted::new(access.user_id, position)))
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/recovery-codes",
    tag = "second-factors",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Ten new recovery codes, shown once; the old ones no longer work", body = RecoveryCodesView),
        (status = 401, description = "No valid access token, or (`step-up-required`) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Not the caller's own account", body = Problem, content_type = PROBLEM),
    )
)]
async fn recovery_codes(
    factors: web::Data<SecondFactorService>,
    context: RequestContext,
    principal: Principal,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let user_id = path_id(&req, "user")?;
    own(&principal, user_id)?;
    principal.require_step_up()?;
    let (codes, position) = factors
        .new_recovery_codes(&context, &principal.actor(), user_id)
        .await?;
    Ok(HttpResponse::Ok().json(RecoveryCodesView {
        id: user_id,
        position,
        recovery_codes: shown(&codes),
    }))
}

fn shown(codes: &[RecoveryCode]) -> Vec<String> {
    codes.iter().map(RecoveryCode::display).collect()
}

fn factor_view(row: FactorRow) -> FactorView {
    FactorView {
        factor_id: row.factor_id,
        kind: row.kind,
        name: row.name,
        enabled: row.enabled,
        created_at: row.created_at,
        enabled_at: row.enabled_at,
    }
}

fn user_and_factor(path: &(String, String)) -> Result<(Uuid, Uuid), ApiError> {
    let user = Uuid::parse_str(&path.0).map_err(|_| ApiError::NotFound("user"))?;
    let factor = Uuid::parse_str(&path.1).map_err(|_| ApiError::NotFound("second factor"))?;
    Ok((user, factor))
}
