pub mod audit;
pub mod auth;
pub mod roles;
pub mod sessions;
pub mod users;

use actix_web::web;

use crate::rate_limit::AuthRateLimit;

pub fn configure(cfg: &mut web::ServiceConfig, auth_rate_limit: &AuthRateLimit) {
    cfg.route("/openapi.json", web::get().to(crate::openapi::document))
        .route("/.well-known/jwks.json", web::get().to(auth::jwks))
        .service(
            web::scope("/v1")
                .configure(|cfg| auth::configure(cfg, auth_rate_limit))
                .configure(|cfg| users::configure(cfg, auth_rate_limit))
                .configure(roles::configure)
                .configure(sessions::configure)
                .configure(audit::configure),
        );
}

/// Unknown paths answer with a problem too.
pub async fn not_found() -> Result<actix_web::HttpResponse, crate::problem::ApiError> {
    Err(crate::problem::ApiError::NotFound("resource"))
}

/// A known path asked with a method it does not serve.
pub async fn method_not_allowed() -> Result<actix_web::HttpResponse, crate::problem::ApiError> {
    Err(crate::problem::ApiError::MethodNotAllowed)
}
