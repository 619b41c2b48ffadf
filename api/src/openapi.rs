//! The OpenAPI document, served at `/openapi.json`, generated from the
//! handlers' annotations so it cannot drift from the routes.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::{FieldError, Problem};
use crate::routes::auth::TokenPair;
use crate::routes::{audit, auth, roles, sessions, users};
use crate::user_queries::UserView;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Identity service",
        description = "Event-sourced users, roles and sessions. Every /v1 route except login, \
                       refresh and (with SIGNUP_MODE=open) registration needs a bearer access token."
    ),
    modifiers(&BearerAuth),
    paths(
        auth::login,
        auth::refresh,
        auth::logout,
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
        audit::aggregate::state
    ),
    components(schemas(
        auth::LoginRequest,
        auth::RefreshRequest,
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
        audit::aggregate::UserStateView,
        audit::aggregate::RoleStateView,
        audit::aggregate::SessionEnded,
        audit::aggregate::SessionStateView,
        audit::aggregate::StateView,
        audit::aggregate::AggregateStateView,
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
                    .build(),
            ),
        );
    }
}

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
