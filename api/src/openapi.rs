//! The OpenAPI document, served at `/openapi.json`, generated from the
//! handlers' annotations so it cannot drift from the routes. The responses
//! every route of a kind can give (a body's 400/408/413/415, a token's 401,
//! `min_position`'s 400/504, a command's 429, ...) are added by
//! [`Conventions`] from what the operation declares, so no handler can
//! forget one. The 405 handler reads the methods of a path from this
//! document too.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use crate::extract::MAX_ARRAY_ITEMS;
use crate::problem::{FieldError, Problem, PROBLEM};
use crate::routes::auth::TokenPair;
use crate::routes::{
    audit, auth, oauth, roles, second_factors, service_accounts, sessions, users, webhooks,
};
use crate::user_queries::UserView;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Identity service",
        description = "Event-sourced users, roles and sessions. Every /v1 route except login, \
                       refresh and (with SIGNUP_MODE=open) registration needs a bearer access \
                       token, or the session cookie set by a login with `\"session\": \"cookie\"`."
    ),
    modifiers(&BearerAuth, &Conventions),
    paths(
        auth::login,
        auth::refresh,
        auth::logout,
        auth::current_session,
        auth::jwks,
        users::register,
        users::list,
        users::me,
        users::get,
        users::update_profile,
        users::deactivate,
        users::reactivate,
        users::unlock,
        users::erase,
        users::change_password,
        users::assign_role,
        users::unassign_role,
        roles::create,
        roles::list,
        roles::get,
        roles::set_permissions,
        roles::delete,
        sessions::list,
        sessions::revoke,
        audit::events::list,
        audit::export::export,
        audit::aggregate::history,
        audit::aggregate::state,
        audit::integrity::verify,
        audit::integrity::request_verification,
        audit::integrity::keys,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::update,
        webhooks::delete,
        webhooks::rotate_secret,
        webhooks::deliveries,
        webhooks::redeliver,
        service_accounts::create,
        service_accounts::list,
        service_accounts::get,
        service_accounts::update,
        service_accounts::erase,
        service_accounts::assign_role,
        service_accounts::unassign_role,
        service_accounts::issue_key,
        service_accounts::rotate_key,
        service_accounts::revoke_key,
        oauth::token,
        auth::login_second_factor,
        auth::step_up,
        auth::begin_passkey_step_up,
        second_factors::begin_totp,
        second_factors::begin_passkey,
        second_factors::finish_passkey,
        second_factors::confirm,
        second_factors::list,
        second_factors::remove,
        second_factors::recovery_codes,
        health_live,
        health_ready,
        metrics,
        document
    ),
    components(schemas(
        auth::LoginRequest,
        auth::SessionMode,
        auth::RefreshRequest,
        auth::CookieSession,
        auth::CurrentSession,
        TokenPair,
        users::RegisterRequest,
        users::UpdateProfileRequest,
        users::ChangePasswordRequest,
        users::AssignRoleRequest,
        users::CommandAccepted,
        users::Page,
        users::Me,
        roles::CreateRoleRequest,
        roles::SetPermissionsRequest,
        roles::RoleView,
        roles::RoleList,
        sessions::SessionView,
        sessions::SessionList,
        sessions::Revoked,
        audit::item::AuditMetadata,
        audit::item::AuditEvent,
        audit::events::AuditEventPage,
        audit::aggregate::History,
        audit::integrity::Verification,
        audit::integrity::BrokenLink,
        audit::integrity::UnprovenTailView,
        audit::integrity::SigningKeys,
        audit::integrity::SigningKeyView,
        audit::aggregate::UserStateView,
        audit::aggregate::RoleStateView,
        audit::aggregate::SessionEnded,
        audit::aggregate::SessionStateView,
        audit::aggregate::WebhookStateView,
        audit::aggregate::ServiceAccountStateView,
        audit::aggregate::ServiceAccountKeyView,
        audit::aggregate::SecondFactorsStateView,
        audit::aggregate::StateView,
        audit::aggregate::AggregateStateView,
        webhooks::CreateWebhookRequest,
        webhooks::UpdateWebhookRequest,
        webhooks::SecretIssued,
        webhooks::WebhookView,
        webhooks::WebhookList,
        webhooks::AttemptView,
        webhooks::DeliveryView,
        webhooks::DeliveryList,
        webhooks::Redelivery,
        service_accounts::CreateServiceAccountRequest,
        service_accounts::UpdateServiceAccountRequest,
        service_accounts::IssueKeyRequest,
        service_accounts::RotateKeyRequest,
        service_accounts::KeyIssued,
        service_accounts::ServiceAccountView,
        service_accounts::ApiKeyView,
        service_accounts::ServiceAccountDetail,
        service_accounts::ServiceAccountList,
        oauth::TokenRequest,
        oauth::TokenResponse,
        oauth::OAuthError,
        auth::SecondFactorChallenge,
        auth::SecondFactorLoginRequest,
        auth::StepUpRequest,
        auth::SteppedUp,
        auth::LoginAnswer,
        auth::SessionAnswer,
        crate::closed_sets::EventTypeSelector,
        auth::PasskeyStepUp,
        second_factors::TotpEnrolmentView,
        second_factors::PasskeyRegistrationView,
        second_factors::FinishPasskeyRequest,
        second_factors::PasskeyRegistered,
        second_factors::ConfirmRequest,
        second_factors::ConfirmedView,
        second_factors::RecoveryCodesView,
        second_factors::FactorView,
        second_factors::FactorList,
        UserView,
        Problem,
        FieldError
    ))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token (JWT) from login, refresh or POST /v1/oauth/token, \
                         or a service account's API key (`idsk_…`) in its place",
                    ))
                    .build(),
            ),
        );
    }
}

/// Operation ids made unique (`<tag>_<handler>`), and the problems every
/// operation of a kind can answer.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                name_uniquely(operation);
                let charged = method != "get" && !UNCHARGED.contains(&(method, path.as_str()));
                add_common_problems(path, operation, charged);
                if OPTIONAL_BODIES.contains(&(method, path.as_str())) {
                    if let Some(RefOr::T(body)) = operation.request_body.as_mut() {
                        body.required = Some(utoipa::openapi::Required::False);
                    }
                }
            }
        }
    }
}

/// The commands that end a session, which are not charged to the caller's
/// command budget (`Principal::identify`).
const UNCHARGED: [(&str, &str); 2] = [("post", "/v1/auth/logout"), ("delete", "/v1/sessions/{id}")];

/// The commands whose body may be left out altogether (a refresh from the
/// cookie, a rotation with the default overlap).
const OPTIONAL_BODIES: [(&str, &str); 2] = [
    ("post", "/v1/auth/refresh"),
    ("post", "/v1/service-accounts/{id}/keys/{key_id}/rotate"),
];

/// Each operation of the path, with its method.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation?)))
}

fn name_uniquely(operation: &mut Operation) {
    let tag = operation
        .tags
        .as_ref()
        .and_then(|tags| tags.first())
        .cloned();
    if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut()) {
        *id = format!("{tag}_{id}");
    }
}

/// `charged`: a command charged to the caller's command budget, if it takes a token.
fn add_common_problems(path: &str, operation: &mut Operation, charged: bool) {
    let takes_token = operation.security.is_some();
    let has_body = operation.request_body.is_some();
    let waits = has_parameter(operation, "min_position");
    let mut add = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| problem(description));
    };
    let is_api = path.starts_with("/v1/");
    if is_api {
        add(
            "400",
            "A control character in a query or path parameter, or a parameter the route does not take",
        );
        add("500", "An internal error; details only in the logs");
        add(
            "503",
            "The database is out of reach (`unavailable`, with Retry-After); the same request may succeed later",
        );
    }
    if has_body {
        add(
            "400",
            "Malformed JSON, or an unknown, missing or mistyped field (named)",
        );
        add("408", "The body did not arrive in time");
        add("413", "Body over 64 KiB");
        if !path.ends_with(OAUTH_TOKEN) {
            add("415", "The body is not application/json");
        }
    }
    if takes_token {
        add("401", "No valid access token or session cookie");
        add(
            "403",
            "Lacks the permission named, or a change authenticated by cookie from another origin",
        );
    }
    if takes_token && charged {
        add(
            "429",
            "The caller's command limit is spent (`too-many-requests`, with Retry-After)",
        );
    }
    if path.contains("{id}") && is_api {
        add("404", "Nothing with this id");
    }
    if waits {
        add("400", "min_position is not a position the log has issued");
        add("504", "min_position not reached in time");
    }
}

/// The token endpoint takes a form, and answers RFC 6749's errors.
const OAUTH_TOKEN: &str = "/oauth/token";

fn has_parameter(operation: &Operation, name: &str) -> bool {
    operation
        .parameters
        .iter()
        .flatten()
        .any(|parameter| matches!(parameter, RefOr::T(p) if p.name == name))
}

fn problem(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    RefOr::T(
        utoipa::openapi::ResponseBuilder::new()
            .description(description)
            .content(PROBLEM, content)
            .build(),
    )
}

/// A list of permission names, as the domain knows them.
pub fn permission_names() -> ArrayBuilder {
    let names = domain::Permission::ALL
        .iter()
        .map(|permission| permission.as_str());
    ArrayBuilder::new()
        .items(RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names))
                .build(),
        )))
        .max_items(Some(MAX_ARRAY_ITEMS))
}

/// The methods each path of the document answers (`HEAD` with `GET`).
static METHODS: LazyLock<BTreeMap<String, String>> = LazyLock::new(|| {
    let document = ApiDoc::openapi();
    document
        .paths
        .paths
        .iter()
        .map(|(path, item)| {
            let methods: Vec<&str> = [
                (item.get.is_some(), "GET, HEAD"),
                (item.post.is_some(), "POST"),
                (item.put.is_some(), "PUT"),
                (item.patch.is_some(), "PATCH"),
                (item.delete.is_some(), "DELETE"),
            ]
            .into_iter()
            .filter_map(|(served, method)| served.then_some(method))
            .collect();
            (path.clone(), methods.join(", "))
        })
        .collect()
});

/// The `Allow` header of a route pattern (`/v1/users/{id}`), if documented.
pub fn allowed_methods(pattern: &str) -> Option<&'static str> {
    METHODS.get(pattern).map(String::as_str)
}

#[utoipa::path(
    get,
    path = "/health/live",
    tag = "operations",
    responses((status = 200, description = "The process is running: `{\"status\": \"ok\"}`", body = serde_json::Value))
)]
#[allow(dead_code)]
fn health_live() {}

#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "operations",
    responses(
        (status = 200, description = "PostgreSQL and RabbitMQ answer: `{\"status\": \"ok\", \"checks\": {...}}`", body = serde_json::Value),
        (status = 503, description = "A problem (`not-ready`, with `Retry-After`) naming each missing dependency (`database`, `broker`, `signing_key`, `audit_signing_key`) in `detail` and `missing`; `checks` has every one", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn health_ready() {}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format (version 0.0.4)", body = String, content_type = "text/plain"))
)]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document", body = serde_json::Value))
)]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_charged_command_documents_429_and_the_uncharged_ones_do_not() {
        let document = ApiDoc::openapi();
        let answers_429 = |method: &str, path: &str| {
            let item = &document.paths.paths[path];
            let operation = match method {
                "post" => item.post.as_ref(),
                "delete" => item.delete.as_ref(),
                "patch" => item.patch.as_ref(),
                _ => None,
            };
            let operation = operation.unwrap_or_else(|| panic!("no {method} {path}"));
            operation.responses.responses.contains_key("429")
        };
        for (method, path) in UNCHARGED {
            assert!(!answers_429(method, path), "{method} {path}");
        }
        assert!(answers_429("patch", "/v1/users/{id}"));
        assert!(answers_429("post", "/v1/users"));
    }
}
