//! Headers on every response: transport security, no sniffing, no framing,
//! no referrer, and no caching unless a handler chose otherwise (every
//! response but the public keys carries a token, personal data or a
//! problem about them).

use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;

use crate::settings::EdgeSettings;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Each header is added only when the response does not have it already.
pub fn security_headers(settings: &EdgeSettings) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::CACHE_CONTROL, "no-store"));
    let hsts: &HeaderValue = &settings.strict_transport_security;
    if hsts.is_empty() {
        headers
    } else {
        headers.add((header::STRICT_TRANSPORT_SECURITY, hsts.clone()))
    }
}
