//! Request screening before any handler: secret query values are redacted
//! before anything logs the request, and control characters in a query or
//! path parameter are refused with a 400 problem naming the parameter.

use std::borrow::Cow;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Uri;
use actix_web::middleware::Next;
use actix_web::Error;
use percent_encoding::percent_decode_str;

use crate::problem::{ApiError, FieldError};

/// Names of query parameters and JSON fields whose values are secret: they
/// are never logged or repeated in a problem.
const SECRET_NAMES: [&str; 6] = [
    "access_token",
    "refresh_token",
    "token",
    "password",
    "current_password",
    "new_password",
];
const REDACTED: &str = "redacted";

pub fn is_secret(name: &str) -> bool {
    SECRET_NAMES
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(name))
}

/// Replaces the values of secret query parameters in the request's URI, so
/// the request span (`http.target`) and everything after it see
/// `redacted`. No route reads such a parameter.
pub async fn redact_secret_query(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if let Some(uri) = redacted(req.uri()) {
        req.head_mut().uri = uri;
    }
    next.call(req).await
}

fn redacted(uri: &Uri) -> Option<Uri> {
    let query = redacted_query(uri.query()?)?;
    let mut parts = uri.clone().into_parts();
    // Should the rebuilt query not parse, the query is dropped altogether.
    parts.path_and_query = format!("{}?{query}", uri.path())
        .parse()
        .or_else(|_| uri.path().parse())
        .ok();
    Uri::from_parts(parts).ok()
}

/// The query with the value of every secret parameter replaced, whether
/// parameters are separated by `&` or by `;` (some servers and proxies
/// split on either, so a value after a `;` is a parameter to them); all
/// else is kept byte for byte. `None` when there is nothing to redact.
fn redacted_query(query: &str) -> Option<String> {
    let mut out = String::with_capacity(query.len());
    let mut found = false;
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let (pair, tail) = rest.split_at(end);
        match pair.split_once('=') {
            Some((name, _)) if is_secret(&decoded_name(name)) => {
                found = true;
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
        let mut separator = tail.chars();
        match separator.next() {
            Some(separator_char) => {
                out.push(separator_char);
                rest = separator.as_str();
            }
            None => break,
        }
    }
    found.then_some(out)
}

/// A parameter's name as a form decoder reads it (`+` is a space).
fn decoded_name(name: &str) -> Cow<'_, str> {
    form_urlencoded::parse(name.as_bytes())
        .next()
        .map(|(name, _)| Cow::Owned(name.into_owned()))
        .unwrap_or(Cow::Borrowed(name))
}

/// `400 bad-request` naming the first query or path parameter that holds a
/// control character (NUL, ESC, DEL, ...) once percent-decoded.
pub async fn refuse_control_characters(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let offending = in_query(req.query_string()).or_else(|| in_path(&req));
    match offending {
        Some(field) => {
            let error = ApiError::BadRequest(vec![FieldError::new(
                field,
                "must not contain control characters",
            )]);
            Ok(req.error_response(error).map_into_right_body())
        }
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

fn in_query(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, value)| has_control(name) || has_control(value))
        .map(|(name, _)| {
            if has_control(&name) {
                "query".to_string()
            } else {
                name.into_owned()
            }
        })
}

/// The parameter is named by the route's pattern (`/v1/users/{id}` names
/// `id`); a segment outside any parameter is `path`.
fn in_path(req: &ServiceRequest) -> Option<String> {
    let pattern = req.match_pattern().unwrap_or_default();
    let names: Vec<&str> = pattern.split('/').collect();
    req.path()
        .split('/')
        .position(|segment| has_control(&percent_decode_str(segment).decode_utf8_lossy()))
        .map(|index| {
            names
                .get(index)
                .and_then(|name| parameter_name(name))
                .unwrap_or("path")
                .to_string()
        })
}

/// `{id}` or `{id:regex}` is the parameter `id`.
fn parameter_name(segment: &str) -> Option<&str> {
    let inner = segment.strip_prefix('{')?.strip_suffix('}')?;
    inner.split(':').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query_values_are_redacted_and_the_rest_kept() {
        let uri: Uri = "/v1/users?limit=5&access_token=ey.J.x&Password=p%20w"
            .parse()
            .unwrap();
        let redacted = redacted(&uri).unwrap();
        assert_eq!(
            redacted.to_string(),
            "/v1/users?limit=5&access_token=redacted&Password=redacted"
        );
        assert!(super::redacted(&"/v1/users?limit=5".parse().unwrap()).is_none());
    }

    #[test]
    fn secrets_after_a_semicolon_are_redacted_too() {
        assert_eq!(
            redacted_query("a=1;access_token=ey.J.x").as_deref(),
            Some("a=1;access_token=redacted")
        );
        assert_eq!(
            redacted_query("a=1;b=2&%74oken=t;Refresh_Token=r&c=3;password").as_deref(),
            Some("a=1;b=2&%74oken=redacted;Refresh_Token=redacted&c=3;password")
        );
        assert_eq!(
            redacted_query("new_password=a;b&current_password=;x=1").as_deref(),
            Some("new_password=redacted;b&current_password=redacted;x=1")
        );
        assert_eq!(redacted_query("a=1;b=access_token"), None);
        assert_eq!(redacted_query(""), None);
    }

    #[test]
    fn parameters_are_named_from_the_pattern() {
        assert_eq!(parameter_name("{id}"), Some("id"));
        assert_eq!(parameter_name("{id:[0-9]+}"), Some("id"));
        assert_eq!(parameter_name("users"), None);
        assert_eq!(in_query("a=1&email=%00"), Some("email".into()));
        assert_eq!(in_query("a%1B=1"), Some("query".into()));
        assert_eq!(in_query("email=a%2Bb+c"), None);
    }
}
