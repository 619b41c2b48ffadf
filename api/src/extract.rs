//! Request extractors: a JSON body that fails as a problem naming the field,
//! and the context every command records in its events' metadata.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::mime;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::client_address::client_address;
use crate::correlation::CORRELATION_HEADER;
use crate::problem::{ApiError, FieldError};

pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// No array in a request body may hold more items (the longest the API
/// takes is a role's permissions, of which there are a handful).
pub const MAX_ARRAY_ITEMS: usize = 32;
/// How long a request body may take to arrive (actix's
/// `client_request_timeout` bounds only the head).
#[derive(Clone, Copy, Debug)]
pub struct BodyTimeout(pub Duration);

impl Default for BodyTimeout {
    fn default() -> Self {
        Self(Duration::from_secs(10))
    }
}

/// A JSON request body. Content type, size, arrival time and shape are
/// checked before a handler runs; every failure is a problem that names the
/// offending field.
pub struct ValidJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ValidJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = is_json_content_type(req);
        let BodyTimeout(timeout) = req.app_data::<BodyTimeout>().copied().unwrap_or_default();
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::UnsupportedMediaType);
            }
            let bytes = tokio::time::timeout(timeout, body)
                .await
                .map_err(|_| ApiError::RequestTimeout)?
                .map_err(body_error)?;
            parse_json(&bytes).map(ValidJson)
        })
    }
}

/// A JSON request body that may be left out altogether: no body is `None`;
/// a body that is there is checked as [`ValidJson`] checks it (a body with
/// an unknown field is refused, not taken for no body).
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !has_body(req) {
            return Box::pin(async { Ok(OptionalJson(None)) });
        }
        let body = ValidJson::<T>::from_request(req, payload);
        Box::pin(async move { body.await.map(|ValidJson(body)| OptionalJson(Some(body))) })
    }
}

/// Whether the request says a body follows (a length above zero, or chunks).
pub fn has_body(req: &HttpRequest) -> bool {
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<u64>().ok());
    length.is_some_and(|length| length > 0) || req.headers().contains_key(header::TRANSFER_ENCODING)
}

fn is_json_content_type(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(mime) = value.to_str().unwrap_or_default().parse::<mime::Mime>() else {
        return false;
    };
    mime.type_() == mime::APPLICATION
        && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
}

fn body_error(error: actix_web::Error) -> ApiError {
    match error.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        },
        _ => ApiError::MalformedJson("the body could not be read".into()),
    }
}

/// Query-string parameters, with unknown or malformed ones named in a 400 problem.
pub struct ValidQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequest for ValidQuery<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(
            req.query_string().as_bytes(),
        ));
        let parsed = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            let message = error.into_inner().to_string();
            ApiError::BadRequest(vec![FieldError::new(field_of(&path, &message), message)])
        });
        std::future::ready(parsed.map(ValidQuery))
    }
}

/// One JSON document (nothing but whitespace after it), no array longer
/// than [`MAX_ARRAY_ITEMS`], then `T`'s shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let document: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::MalformedJson(error.to_string()))?;
    // Every body is an object; serde would also read a struct from an array.
    if !document.is_object() {
        return Err(ApiError::BadRequest(vec![FieldError::new(
            "body",
            "must be a JSON object",
        )]));
    }
    if let Some(path) = over_long_array(&document, "") {
        let message = format!("has more than {MAX_ARRAY_ITEMS} items");
        return Err(ApiError::BadRequest(vec![FieldError::new(path, message)]));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if !inner.is_data() {
            return ApiError::MalformedJson(inner.to_string());
        }
        let field = field_of(&path, &inner.to_string());
        let message = shown_message(&field, without_type_names(strip_position(&inner)));
        ApiError::BadRequest(vec![FieldError::new(field, message)])
    })
}

/// The path (as `serde_path_to_error` writes it) of the first array with
/// more than [`MAX_ARRAY_ITEMS`] items.
fn over_long_array(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::Array(items) if items.len() > MAX_ARRAY_ITEMS => Some(path.to_string()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| over_long_array(item, &format!("{path}[{index}]"))),
        Value::Object(fields) => fields.iter().find_map(|(name, field)| {
            let path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            over_long_array(field, &path)
        }),
        _ => None,
    }
}

/// serde quotes the value it refused ("invalid type: integer `2718...`,
/// expected a string"); for a secret field only what was expected is kept.
fn shown_message(field: &str, message: String) -> String {
    let name = field.rsplit('.').next().unwrap_or(field);
    if !crate::screening::is_secret(name) || message.starts_with("missing field") {
        return message;
    }
    match message.rfind(", expected ") {
        Some(index) => format!("invalid type or value{}", &message[index..]),
        None => "invalid type or value".to_string(),
    }
}

/// The path names an unknown field itself; a missing field only appears in
/// serde's message, in backticks, below the path of its parent.
fn field_of(path: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (".", Some(name)) => name.to_string(),
        (_, Some(name)) => format!("{path}.{name}"),
        _ => path.to_string(),
    }
}

/// serde names the Rust type it expected (`expected struct LoginRequest`);
/// the client knows it as a JSON object.
fn without_type_names(message: String) -> String {
    match message.find("expected struct ") {
        Some(index) => format!("{}expected a JSON object", &message[..index]),
        None => message,
    }
}

fn strip_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.find(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message,
    }
}

/// The extractor of [`app::RequestContext`]: who asked and from where.
pub struct RequestContext(app::RequestContext);

impl std::ops::Deref for RequestContext {
    type Target = app::RequestContext;

    fn deref(&self) -> &app::RequestContext {
        &self.0
    }
}

impl FromRequest for RequestContext {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Self(Self::of(req))))
    }
}

impl RequestContext {
    /// Who asked and from where, read off `req`.
    pub fn of(req: &HttpRequest) -> app::RequestContext {
        app::RequestContext {
            correlation_id: correlation_id(req),
            request_ip: client_address(req).map(|address| address.to_string()),
            user_agent: header_text(req, header::USER_AGENT.as_str(), 256),
        }
    }
}

/// Set on every request by `correlation::assign`; a fresh id only if that
/// middleware is missing.
fn correlation_id(req: &HttpRequest) -> String {
    header_text(req, CORRELATION_HEADER, 128).unwrap_or_else(|| Uuid::new_v4().to_string())
}

fn header_text(req: &HttpRequest, name: &str, max_chars: usize) -> Option<String> {
    let value = req.headers().get(name)?.to_str().ok()?;
    Some(value.chars().take(max_chars).collect())
}
