//! CSRF defence for requests authenticated by the session cookie: a request
//! that may change state must say it comes from the api's own origin
//! (`Sec-Fetch-Site: same-origin`) or carry an `Origin` that is the api's
//! own or one of `CORS_ALLOWED_ORIGINS`. A request that says neither is
//! refused: every browser that can hold the cookie sends one of the two on
//! such requests, and only browsers send the cookie. Requests with a bearer
//! token are not checked: no browser attaches one by itself. DESIGN.md
//! argues the choice against a double-submit token.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest};

use crate::cors::AllowedOrigins;
use crate::problem::ApiError;

const SEC_FETCH_SITE: &str = "sec-fetch-site";

pub fn check(req: &HttpRequest) -> Result<(), ApiError> {
    if is_safe(req.method()) || comes_from_allowed_origin(req) {
        Ok(())
    } else {
        tracing::warn!("a cookie-authenticated change from another origin refused");
        Err(ApiError::OriginRefused(
            "a change authenticated by the session cookie must come from the api's own origin \
             or an allowed one (Sec-Fetch-Site or Origin)",
        ))
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn comes_from_allowed_origin(req: &HttpRequest) -> bool {
    let headers = req.headers();
    let fetch_site = headers.get(SEC_FETCH_SITE);
    if fetch_site.is_some_and(|site| site == "same-origin") {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let allowed = req
        .app_data::<web::Data<AllowedOrigins>>()
        .is_some_and(|origins| origins.allows(origin));
    // Without Fetch Metadata (an older browser), the api's own origin: the
    // Origin's host and port are the Host the browser sent the request to.
    allowed || (fetch_site.is_none() && is_own_origin(origin, headers.get(header::HOST)))
}

fn is_own_origin(origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), host.map(|host| host.to_str())) else {
        return false;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn allowed(method: Method, headers: &[(&str, &str)]) -> bool {
        let mut request = TestRequest::default()
            .method(method)
            .insert_header((header::HOST, "api.example.com"))
            .app_data(web::Data::new(AllowedOrigins::new(vec![
                crate::cors::Origin::parse("https://app.example.com").unwrap(),
            ])));
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        check(&request.to_http_request()).is_ok()
    }

    #[test]
    fn a_change_must_prove_where_it_comes_from() {
        assert!(allowed(Method::GET, &[]));
        assert!(allowed(Method::POST, &[("sec-fetch-site", "same-origin")]));
        assert!(allowed(
            Method::POST,
            &[
                ("origin", "https://app.example.com"),
                ("sec-fetch-site", "same-site")
            ]
        ));
        assert!(allowed(
            Method::POST,
            &[("origin", "https://api.example.com")]
        ));
        assert!(!allowed(Method::POST, &[]));
        assert!(!allowed(
            Method::DELETE,
            &[("origin", "https://evil.example.net")]
        ));
        assert!(!allowed(Method::POST, &[("origin", "null")]));
        assert!(!allowed(
            Method::POST,
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://api.example.com")
            ]
        ));
        assert!(!allowed(
            Method::PATCH,
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "https://evil.example.com")
            ]
        ));
    }
}
