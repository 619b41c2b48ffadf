//! CORS for the origins of `CORS_ALLOWED_ORIGINS` only, always with
//! credentials: an allowed origin's preflight is answered with the methods
//! and headers the api takes, its requests' responses name it; any other
//! origin gets no CORS header at all (and a refused preflight).
//!
//! Hand-written rather than `actix-cors`, which adds
//! `Access-Control-Allow-Credentials` to every response, whatever the
//! origin, and answers a refused preflight with a plain-text 400.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, Uri};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpResponse, ResponseError};

use crate::problem::ApiError;

const ALLOWED_METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];
const ALLOWED_HEADERS: [&str; 3] = ["authorization", "content-type", "x-correlation-id"];
const EXPOSED_HEADERS: &str =
    "Location, Projection-Position, Retry-After, WWW-Authenticate, X-Correlation-Id";
/// How long a browser may reuse a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// `scheme://host[:port]` as a browser sends it in `Origin`: lowercase,
/// without the scheme's default port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin(HeaderValue);

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("{0:?} is not an origin: write scheme://host[:port], nothing after it")]
    NotAnOrigin(String),
    #[error("{0:?} is not an origin")]
    Unparsable(String, #[source] actix_web::http::uri::InvalidUri),
}

impl Origin {
    pub fn parse(raw: &str) -> Result<Self, OriginError> {
        let raw = raw.trim();
        let not_an_origin = || OriginError::NotAnOrigin(raw.to_owned());
        let uri: Uri = raw
            .parse()
            .map_err(|error| OriginError::Unparsable(raw.to_owned(), error))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(not_an_origin());
        };
        let bare = uri.path_and_query().is_none_or(|path| path.as_str() == "/");
        let scheme = scheme.to_ascii_lowercase();
        if !bare || !matches!(scheme.as_str(), "http" | "https") || raw.contains('@') {
            return Err(not_an_origin());
        }
        let default_port = if scheme == "https" { 443 } else { 80 };
        let host = authority.host().to_ascii_lowercase();
        let origin = match authority.port_u16() {
            Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
            _ => format!("{scheme}://{host}"),
        };
        HeaderValue::from_str(&origin)
            .map(Self)
            .map_err(|_| not_an_origin())
    }
}

/// The origins of `CORS_ALLOWED_ORIGINS`, shared by CORS and the CSRF check.
#[derive(Clone, Debug, Default)]
pub struct AllowedOrigins(Vec<Origin>);

impl AllowedOrigins {
    pub fn new(origins: Vec<Origin>) -> Self {
        Self(origins)
    }

    pub fn allows(&self, origin: &HeaderValue) -> bool {
        self.0.iter().any(|allowed| allowed.0 == origin)
    }

    /// The request's `Origin` when it is allowed.
    fn allowed_origin_of(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        headers
            .get(header::ORIGIN)
            .filter(|origin| self.allows(origin))
            .cloned()
    }
}

pub async fn apply(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let allowed = req
        .app_data::<web::Data<AllowedOrigins>>()
        .map(|origins| origins.allowed_origin_of(req.headers()))
        .unwrap_or_default();
    if is_preflight(&req) {
        let answer = preflight(allowed, req.headers());
        return Ok(req.into_response(answer).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    Ok(response.map_into_left_body())
}

fn is_preflight(req: &ServiceRequest) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn preflight(allowed: Option<HeaderValue>, request: &HeaderMap) -> HttpResponse {
    let Some(origin) = allowed else {
        return refused("this origin may not call the api");
    };
    let method = request
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|method| Method::from_bytes(method.as_bytes()).ok());
    if !method.is_some_and(|method| ALLOWED_METHODS.contains(&method)) {
        return refused("this method may not be used across origins");
    }
    if !requested_headers(request).all(|name| ALLOWED_HEADERS.contains(&name.as_str())) {
        return refused("a requested header may not be sent across origins");
    }
    let methods = ALLOWED_METHODS.map(|method| method.to_string()).join(", ");
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
        .insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, methods))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            ALLOWED_HEADERS.join(", "),
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE))
        .insert_header((
            header::VARY,
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ))
        .finish()
}

fn requested_headers(request: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    request
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
}

fn refused(reason: &'static str) -> HttpResponse {
    let mut response = ApiError::OriginRefused(reason).error_response();
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_as_browsers_send_them() {
        let origin = |raw: &str| Origin::parse(raw).map(|origin| origin.0);
        assert_eq!(
            origin("https://App.Example.com").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            origin("https://app.example.com:443/").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        for refused in [
            "*",
            "null",
            "app.example.com",
            "https://a.com/path",
            "ftp://a.com",
            "https://u@a.com",
        ] {
            assert!(Origin::parse(refused).is_err(), "{refused} accepted");
        }
    }
}
