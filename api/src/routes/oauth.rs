//! `POST /v1/oauth/token`: the OAuth 2.0 client-credentials grant (RFC 6749
//! §4.4). The client is an API key: its id is the `client_id`, the whole key
//! the `client_secret`, sent with HTTP Basic (§2.3.1, each part
//! form-urlencoded) or as form fields, never both. The answer is the access
//! token a person gets, with the service account as `sub`, the key as
//! `client_id` and the granted permissions as `scope`. Errors on this route,
//! and only here, take the RFC's shape (§5.2) instead of a problem.

use std::collections::BTreeSet;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use app::service_accounts::authentication::MachineAuthentication;
use app::tokens::AccessTokens;
use app::AppError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use domain::Permission;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::extract::RequestContext;
use crate::problem::ApiError;

/// The one grant type served.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/oauth/token")
            .route(web::post().to(token))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// The form of a token request (`application/x-www-form-urlencoded`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenRequest {
    /// `client_credentials`.
    grant_type: String,
    /// The key's id, unless sent with HTTP Basic.
    client_id: Option<String>,
    /// The whole API key, unless sent with HTTP Basic.
    client_secret: Option<String>,
    /// Space-separated permissions, of those the key may use; absent: all.
    scope: Option<String>,
}

/// RFC 6749 §5.1.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    access_token: String,
    /// `Bearer`.
    token_type: &'static str,
    expires_in: i64,
    /// The permissions granted, space-separated.
    scope: String,
}

/// RFC 6749 §5.2.
#[derive(Serialize, ToSchema, Debug)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_scope` or
    /// `unsupported_grant_type`.
    error: &'static str,
    error_description: &'static str,
    #[serde(skip)]
    #[schema(ignore)]
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(error: &'static str, error_description: &'static str) -> Self {
        Self {
            error,
            error_description,
            retry_after: None,
        }
    }

    fn invalid_request(description: &'static str) -> Self {
        Self::new("invalid_request", description)
    }

    fn invalid_client() -> Self {
        Self::new("invalid_client", "client authentication failed")
    }

    fn status(&self) -> StatusCode {
        match (self.error, self.retry_after) {
            (_, Some(_)) => StatusCode::TOO_MANY_REQUESTS,
            ("invalid_client", None) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        no_store(&mut response);
        if self.status() == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"oauth\""));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(self)
    }
}

/// The client's credentials and what it asks for, from the form and the head.
struct Asked {
    client_id: String,
    client_secret: String,
    scope: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/oauth/token",
    tag = "auth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An access token for the service account, with the granted scope", body = TokenResponse),
        (status = 400, description = "`invalid_request`, `unsupported_grant_type` or `invalid_scope` (RFC 6749 §5.2)", body = OAuthError),
        (status = 401, description = "`invalid_client`, with `WWW-Authenticate: Basic`: a key that is unknown, wrong, revoked, expired or of a disabled account", body = OAuthError),
        (status = 429, description = "`invalid_client`: too many failed attempts from this address; `Retry-After` says when to try again", body = OAuthError),
    )
)]
pub async fn token(
    req: HttpRequest,
    body: web::Bytes,
    machines: web::Data<MachineAuthentication>,
    tokens: web::Data<AccessTokens>,
) -> HttpResponse {
    match grant(&req, &body, &machines, &tokens).await {
        Ok(granted) => {
            let mut response = HttpResponse::Ok();
            no_store(&mut response);
            response.json(granted)
        }
        Err(Refused::OAuth(error)) => error.response(),
        Err(Refused::Internal(error)) => actix_web::ResponseError::error_response(&error),
    }
}

enum Refused {
    OAuth(OAuthError),
    Internal(ApiError),
}

impl From<OAuthError> for Refused {
    fn from(error: OAuthError) -> Self {
        Self::OAuth(error)
    }
}

async fn grant(
    req: &HttpRequest,
    body: &[u8],
    machines: &MachineAuthentication,
    tokens: &AccessTokens,
) -> Result<TokenResponse, Refused> {
    let asked = asked(req, body)?;
    let context = RequestContext::of(req);
    let machine = match machines.with_key(&context, &asked.client_secret).await {
        Ok(machine) => machine,
        Err(AppError::InvalidCredentials) => return Err(OAuthError::invalid_client().into()),
        Err(AppError::TooManyRequests {
            retry_after_seconds,
        }) => {
            return Err(OAuthError {
                retry_after: Some(retry_after_seconds),
                ..OAuthError::new(
                    "invalid_client",
                    "too many failed attempts from this address",
                )
            }
            .into())
        }
        Err(other) => return Err(Refused::Internal(other.into())),
    };
    let named = Uuid::parse_str(&asked.client_id).ok();
    if named != Some(machine.key_id) {
        return Err(OAuthError::invalid_client().into());
    }
    let scope = granted_scope(asked.scope.as_deref(), &machine.permissions)?;
    let issued = tokens
        .issue_to_machine(
            machine.service_account_id,
            machine.key_id,
            &scope,
            machine.roles,
            chrono::Utc::now(),
        )
        .map_err(|error| Refused::Internal(ApiError::internal(error)))?;
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        scope: scope
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    })
}

/// The request's parameters: each at most once (§3.2), the client
/// authenticated one way only (§2.3).
fn asked(req: &HttpRequest, body: &[u8]) -> Result<Asked, OAuthError> {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(body) {
        if params.iter().any(|(seen, _)| *seen == name) {
            return Err(OAuthError::invalid_request("a parameter is repeated"));
        }
        params.push((name.into_owned(), value.into_owned()));
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    match param("grant_type").as_deref() {
        None => return Err(OAuthError::invalid_request("grant_type is missing")),
        Some(CLIENT_CREDENTIALS) => {}
        Some(_) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                "only client_credentials is served",
            ))
        }
    }
    let basic = basic_credentials(req.headers().get(header::AUTHORIZATION))?;
    let in_form = (param("client_id"), param("client_secret"));
    let (client_id, client_secret) = match (basic, in_form) {
        (Some(_), (Some(_), _) | (_, Some(_))) => {
            return Err(OAuthError::invalid_request(
                "the client is authenticated in more than one way",
            ))
        }
        (Some(credentials), _) => credentials,
        (None, (Some(id), Some(secret))) => (id, secret),
        (None, _) => return Err(OAuthError::invalid_client()),
    };
    Ok(Asked {
        client_id,
        client_secret,
        scope: param("scope"),
    })
}

/// `Authorization: Basic` as RFC 6749 §2.3.1 has it: base64 of the
/// form-urlencoded id and secret joined by a colon. Another scheme is not
/// client authentication; a malformed Basic value is a failed one.
fn basic_credentials(value: Option<&HeaderValue>) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| OAuthError::invalid_client())?;
    let (scheme, encoded) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client());
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(OAuthError::invalid_client)?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(OAuthError::invalid_client)?;
    let decode = |part: &str| -> String {
        form_urlencoded::parse(format!("x={part}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((decode(id), decode(secret))))
}

/// The permissions asked for, each of which the key may use; absent, all.
fn granted_scope(
    asked: Option<&str>,
    allowed: &BTreeSet<Permission>,
) -> Result<BTreeSet<Permission>, OAuthError> {
    let Some(asked) = asked else {
        return Ok(allowed.clone());
    };
    let mut scope = BTreeSet::new();
    for name in asked.split(' ').filter(|name| !name.is_empty()) {
        match Permission::parse(name) {
            Ok(permission) if allowed.contains(&permission) => scope.insert(permission),
            _ => {
                return Err(OAuthError::new(
                    "invalid_scope",
                    "the scope names a permission the key may not use",
                ))
            }
        };
    }
    Ok(scope)
}

fn no_store(response: &mut actix_web::HttpResponseBuilder) {
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded_after_base64() {
        let value =
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("a%2Bb:c%3Ad+e"))).unwrap();
        assert_eq!(
            basic_credentials(Some(&value)).unwrap(),
            Some(("a+b".to_owned(), "c:d e".to_owned()))
        );
        for bad in ["Basic !!!", "Basic bm9jb2xvbg==", "Bearer x"] {
            let value = HeaderValue::from_static(bad);
            assert_eq!(
                basic_credentials(Some(&value)).unwrap_err().error,
                "invalid_client",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_scope_narrows_and_never_widens() {
        let allowed = BTreeSet::from([Permission::UsersRead, Permission::RolesRead]);
        assert_eq!(granted_scope(None, &allowed).unwrap(), allowed);
        assert_eq!(
            granted_scope(Some("users:read"), &allowed).unwrap(),
            BTreeSet::from([Permission::UsersRead])
        );
        for wider in ["users:write", "users:read audit:read", "nonsense"] {
            assert_eq!(
                granted_scope(Some(wider), &allowed).unwrap_err().error,
                "invalid_scope"
            );
        }
    }
}
