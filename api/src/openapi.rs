//! The OpenAPI document, served at `/openapi.json`, generated from the
//! handlers' annotations so it cannot drift from the routes.

use actix_web::HttpResponse;
use utoipa::OpenApi;

use crate::problem::{FieldError, Problem};
use crate::routes::users;
use crate::user_queries::UserView;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Identity service",
        description = "Event-sourced users. Until authorization lands, every /v1 route is open."
    ),
    paths(
        users::register,
        users::list,
        users::get,
        users::update_profile,
        users::deactivate,
        users::reactivate
    ),
    components(schemas(
        users::RegisterRequest,
        users::UpdateProfileRequest,
        users::CommandAccepted,
        users::Page,
        UserView,
        Problem,
        FieldError
    ))
)]
pub struct ApiDoc;

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
