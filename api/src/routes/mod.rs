pub mod users;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/v1").configure(users::configure));
}

/// Unknown paths answer with a problem too.
pub async fn not_found() -> Result<actix_web::HttpResponse, crate::problem::ApiError> {
    Err(crate::problem::ApiError::NotFound("resource"))
}
