pub mod audit;
pub mod auth;
pub mod oauth;
pub mod roles;
pub mod second_factors;
pub mod service_accounts;
pub mod sessions;
pub mod users;
pub mod webhooks;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::problem::ApiError;
use crate::rate_limit::AuthRateLimit;

/// The paths `infra::health` serves (GET only): registered again after it,
/// so another method on them is a 405 instead of falling through to 404.
const HEALTH_PATHS: [&str; 3] = ["/health/live", "/health/ready", "/metrics"];

pub fn configure(cfg: &mut web::ServiceConfig, auth_rate_limit: &AuthRateLimit) {
    for path in HEALTH_PATHS {
        cfg.service(web::resource(path).default_service(web::to(method_not_allowed)));
    }
    cfg.service(
        web::resource("/openapi.json")
            .route(web::get().to(crate::openapi::document))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/.well-known/jwks.json")
            .route(web::get().to(auth::jwks))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::scope("/v1")
            .configure(|cfg| auth::configure(cfg, auth_rate_limit))
            .configure(|cfg| users::configure(cfg, auth_rate_limit))
            .configure(roles::configure)
            .configure(sessions::configure)
            .configure(audit::configure)
            .configure(webhooks::configure)
            .configure(service_accounts::configure)
            .configure(second_factors::configure)
            .configure(oauth::configure),
    );
}

/// `parsed`'s value, or its error recorded against the field `name`.
pub fn field<T, E: ToString>(
    errors: &mut Vec<crate::problem::FieldError>,
    name: &str,
    parsed: Result<T, E>,
) -> Option<T> {
    parsed
        .map_err(|error| errors.push(crate::problem::FieldError::new(name, error)))
        .ok()
}

/// Unknown paths answer with a problem too.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("resource"))
}

/// A known path asked with a method it does not serve: 405 with `Allow`
/// (RFC 9110), the methods the OpenAPI document gives the path.
pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed.error_response();
    let allowed = req
        .match_pattern()
        .and_then(|pattern| crate::openapi::allowed_methods(&pattern));
    if let Some(allowed) = allowed {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allowed));
    }
    response
}

/// `HEAD` is answered as `GET` (RFC 9110); actix-http sends no body for a
/// request that arrived as `HEAD`, whatever the method is by then.
pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    next.call(req).await
}
