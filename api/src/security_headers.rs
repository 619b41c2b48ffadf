//! Headers on every response: transport security, no sniffing, no framing,
//! no referrer, and no caching unless a handler chose otherwise (every
//! response but the public keys carries a token, personal data or a
//! problem about them).

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::DefaultHeaders;

use crate::settings::EdgeSettings;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Each header is added only when the response does not have it already.
pub fn security_headers(settings: &EdgeSettings) -> DefaultHeaders {
    security_header_values(settings)
        .into_iter()
        .fold(DefaultHeaders::new(), DefaultHeaders::add)
}

/// The headers themselves, also written on the answers no middleware sees
/// (see [`crate::request_head_problems`]).
pub fn security_header_values(settings: &EdgeSettings) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    let hsts = &settings.strict_transport_security;
    if !hsts.is_empty() {
        headers.push((header::STRICT_TRANSPORT_SECURITY, hsts.clone()));
    }
    headers
}
