//! The session in cookies, for browsers: the access token and the refresh
//! token, each in a `__Host-` cookie (`Secure`, `Path=/`, no `Domain`: only
//! this host over HTTPS may set or read it), `HttpOnly` (no script reads
//! it) and `SameSite=Strict` (no other site's page sends it).

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponseBuilder};
use chrono::Utc;

use app::sign_in::TokenPair;

pub const ACCESS_COOKIE: &str = "__Host-access_token";
pub const REFRESH_COOKIE: &str = "__Host-refresh_token";

/// Sets both cookies: the access token's for its lifetime, the refresh
/// token's until the session's absolute end.
pub fn set_session(response: &mut HttpResponseBuilder, tokens: &TokenPair) {
    let session_left = (tokens.session_expires_at - Utc::now())
        .num_seconds()
        .max(0);
    response.cookie(cookie(
        ACCESS_COOKIE,
        &tokens.access_token,
        tokens.expires_in,
    ));
    response.cookie(cookie(REFRESH_COOKIE, &tokens.refresh_token, session_left));
}

/// Replaces the access cookie (a step-up's new token), for its lifetime.
pub fn set_access(response: &mut HttpResponseBuilder, token: &str, expires_in: i64) {
    response.cookie(cookie(ACCESS_COOKIE, token, expires_in));
}

/// Whether the request's access token came in the cookie (no
/// `Authorization` header).
pub fn in_cookie(req: &HttpRequest) -> bool {
    !req.headers().contains_key(header::AUTHORIZATION) && req.cookie(ACCESS_COOKIE).is_some()
}

/// Tells the browser to drop both cookies.
pub fn clear_session(response: &mut HttpResponseBuilder) {
    response.cookie(cookie(ACCESS_COOKIE, "", 0));
    response.cookie(cookie(REFRESH_COOKIE, "", 0));
}

fn cookie(name: &'static str, value: &str, max_age_seconds: i64) -> Cookie<'static> {
    Cookie::build(name, value.to_owned())
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(time::Duration::seconds(max_age_seconds))
        .finish()
}
