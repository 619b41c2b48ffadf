pub mod users;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(crate::openapi::document))
        .service(web::scope("/v1").configure(users::configure));
}

/// Unknown paths answer with a problem too.
pub async fn not_found() -> Result<actix_web::HttpResponse, crate::problem::ApiError> {
    Err(crate::problem::ApiError::NotFound("resource"))
}

/// A known path asked with a method it does not serve.
pub async fn method_not_allowed() -> Result<actix_web::HttpResponse, crate::problem::ApiError> {
    Err(crate::problem::ApiError::MethodNotAllowed)
}
