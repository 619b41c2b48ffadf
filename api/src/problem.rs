//! The one place where errors become HTTP: every failure a client can see is
//! an `ApiError`, answered as RFC 7807 `application/problem+json`.

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpResponse, ResponseError};
use app::AppError;
use serde::Serialize;

const TYPE_BASE: &str = "https://identity.example/problems/";
/// At most this many field errors are reported; the detail says how many
/// more there were.
pub const MAX_FIELD_ERRORS: usize = 20;
/// The media type of every problem answer.
pub const PROBLEM: &str = "application/problem+json";

/// A rule a field of the request broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl ToString) -> Self {
        Self {
            field: field.into(),
            message: message.to_string(),
        }
    }
}

#[derive(thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{}", describe(.0))]
    BadRequest(Vec<FieldError>),
    #[error("{}", describe(.0))]
    Validation(Vec<FieldError>),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// The request line or a header is not HTTP/1.1 (answered for
    /// actix-http's dispatcher, see [`crate::request_head_problems`]).
    #[error("the request line or a header field could not be parsed")]
    MalformedRequestHead,
    #[error("the request head is over 128 KiB or has more than 96 header fields")]
    RequestHeadTooLarge,
    #[error("the request head did not arrive in time")]
    RequestHeadTimeout,
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The path names an aggregate type the event contract does not have.
    #[error("aggregate type {0:?} not found")]
    UnknownAggregateType(String),
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("the aggregate was changed by another request; retry")]
    ConcurrencyConflict,
    #[error("this would leave no active user holding every permission")]
    LastAdministrator,
    #[error("{0}")]
    WebhookLimitReached(domain::webhook::WebhookLimitReached),
    #[error("the read model did not reach position {position} within {waited_ms} ms")]
    NotYetProjected { position: i64, waited_ms: u128 },
    #[error(
        "authentication is required: send a valid access token as `Authorization: Bearer <token>`"
    )]
    Unauthorized,
    /// The session cookie was sent and refused. No `WWW-Authenticate:
    /// Bearer` challenge: a browser's page signs in again, it does not
    /// switch to sending a bearer token.
    #[error("the session cookie is not valid: the session has ended or expired; log in again")]
    SessionCookieRefused,
    /// A bearer token was sent and refused (RFC 6750 `error="invalid_token"`).
    #[error("the access token is not valid: it is malformed, expired, or its session has ended")]
    InvalidToken,
    /// A cross-origin request (a preflight, or a change authenticated by
    /// cookie) from an origin the api does not allow.
    #[error("{0}")]
    OriginRefused(&'static str),
    #[error("the email or password is wrong, or the account cannot sign in")]
    InvalidCredentials,
    #[error("the refresh token is not valid")]
    InvalidRefreshToken,
    #[error("this needs the permission {0}")]
    Forbidden(&'static str),
    /// RFC 9470's `insufficient_user_authentication`: a sensitive command
    /// from a person who has not proved their second factor recently.
    #[error(
        "this command needs a second factor proved within the last {max_age_seconds} s: \
         prove it with POST /v1/auth/step-up, then send the command again"
    )]
    StepUpRequired { max_age_seconds: i64 },
    /// A person holding the permission named, who must enrol a second
    /// factor before anything else (`SECOND_FACTOR_REQUIRED_FOR`).
    #[error(
        "holders of {0} must enrol a second factor first: \
         POST /v1/users/{{id}}/second-factors/totp (or /passkeys) with your own id"
    )]
    SecondFactorEnrolmentRequired(&'static str),
    #[error("too many requests; retry in {retry_after_seconds} s")]
    TooManyRequests { retry_after_seconds: u64 },
    #[error("the service is busy; retry in {retry_after_seconds} s")]
    Overloaded { retry_after_seconds: u64 },
    /// PostgreSQL is out of reach; the same request may succeed later.
    #[error("the service cannot reach its database; retry in {retry_after_seconds} s")]
    Unavailable { retry_after_seconds: u64 },
    #[error("an internal error occurred")]
    Internal(#[source] anyhow::Error),
    /// A response actix built without a body (see [`bare_errors_as_problems`]).
    #[error("{}", .0.canonical_reason().unwrap_or("error").to_lowercase())]
    Other(StatusCode),
}

fn describe(errors: &[FieldError]) -> String {
    let shown = errors
        .iter()
        .take(MAX_FIELD_ERRORS)
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    match errors.len().saturating_sub(MAX_FIELD_ERRORS) {
        0 => shown,
        more => format!("{shown}; and {more} more errors not shown"),
    }
}

/// What the logs show (`tracing-actix-web` records it): the kind and the
/// detail, so it is as short as the detail; the cause of an internal error.
impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("ApiError");
        debug
            .field("kind", &self.kind())
            .field("detail", &self.to_string());
        if let Self::Internal(cause) = self {
            debug.field("cause", cause);
        }
        debug.finish()
    }
}

impl ApiError {
    /// A failure that is not the client's: `500 internal`, unless it is
    /// PostgreSQL out of reach, which passes by itself: `503 unavailable`
    /// with `Retry-After`. Either way the cause is logged, never answered.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        let error = error.into();
        if error.chain().any(infra::outage::database_unavailable) {
            tracing::warn!(error = ?error, "database unavailable; answering 503");
            return Self::Unavailable {
                retry_after_seconds: DATABASE_RETRY_AFTER_SECONDS,
            };
        }
        Self::Internal(error)
    }

    pub fn invalid(field: &str, message: impl ToString) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// The problem for an error status actix answered with an empty body.
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::NotFound("resource"),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => Self::RequestTimeout,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge {
                limit: crate::extract::MAX_BODY_BYTES,
            },
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            status => Self::Other(status),
        }
    }

    /// Stable, documented problem type (the last segment of `type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed-json",
            Self::BadRequest(_) => "bad-request",
            Self::Validation(_) => "validation-failed",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::RequestTimeout | Self::RequestHeadTimeout => "request-timeout",
            Self::MalformedRequestHead => "malformed-request",
            Self::RequestHeadTooLarge => "request-head-too-large",
            Self::NotFound(_) | Self::UnknownAggregateType(_) => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict(_) => "conflict",
            Self::ConcurrencyConflict => "concurrency-conflict",
            Self::LastAdministrator => "last-administrator",
            Self::WebhookLimitReached(_) => "webhook-limit-reached",
            Self::NotYetProjected { .. } => "projection-timeout",
            Self::Unauthorized | Self::InvalidToken | Self::SessionCookieRefused => "unauthorized",
            Self::OriginRefused(_) => "origin-refused",
            Self::InvalidCredentials => "invalid-credentials",
            Self::InvalidRefreshToken => "invalid-refresh-token",
            Self::Forbidden(_) => "forbidden",
            Self::StepUpRequired { .. } => "step-up-required",
            Self::SecondFactorEnrolmentRequired(_) => "second-factor-enrolment-required",
            Self::TooManyRequests { .. } => "too-many-requests",
            Self::Overloaded { .. } => "overloaded",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal(_) => "internal",
            Self::Other(status) if status.is_server_error() => "internal",
            Self::Other(status) if *status == StatusCode::BAD_REQUEST => "bad-request",
            Self::Other(_) => "client-error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "Malformed JSON",
            Self::BadRequest(_) => "Bad request",
            Self::Validation(_) => "Validation failed",
            Self::PayloadTooLarge { .. } => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::RequestTimeout | Self::RequestHeadTimeout => "Request timeout",
            Self::MalformedRequestHead => "Malformed request",
            Self::RequestHeadTooLarge => "Request head too large",
            Self::NotFound(_) | Self::UnknownAggregateType(_) => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Conflict(_) => "Conflict",
            Self::ConcurrencyConflict => "Concurrency conflict",
            Self::LastAdministrator => "Last administrator",
            Self::WebhookLimitReached(_) => "Webhook limit reached",
            Self::NotYetProjected { .. } => "Read model not yet up to date",
            Self::Unauthorized | Self::InvalidToken | Self::SessionCookieRefused => "Unauthorized",
            Self::OriginRefused(_) => "Origin refused",
            Self::InvalidCredentials => "Invalid credentials",
            Self::InvalidRefreshToken => "Invalid refresh token",
            Self::Forbidden(_) => "Forbidden",
            Self::StepUpRequired { .. } => "Step-up required",
            Self::SecondFactorEnrolmentRequired(_) => "Second factor enrolment required",
            Self::TooManyRequests { .. } => "Too many requests",
            Self::Overloaded { .. } => "Service overloaded",
            Self::Unavailable { .. } => "Service unavailable",
            Self::Internal(_) => "Internal error",
            Self::Other(status) => status.canonical_reason().unwrap_or("Error"),
        }
    }

    /// The body of this error's answer.
    pub fn problem_json(&self) -> String {
        let problem = Problem {
            type_uri: format!("{TYPE_BASE}{}", self.kind()),
            title: self.title().to_string(),
            status: self.status_code().as_u16(),
            detail: self.to_string(),
            errors: self.field_errors().map(<[FieldError]>::to_vec),
            max_age: match self {
                Self::StepUpRequired { max_age_seconds } => Some(*max_age_seconds),
                _ => None,
            },
        };
        serde_json::to_string(&problem).unwrap_or_default()
    }

    /// The first [`MAX_FIELD_ERRORS`] field errors.
    fn field_errors(&self) -> Option<&[FieldError]> {
        match self {
            Self::BadRequest(errors) | Self::Validation(errors) => {
                Some(&errors[..errors.len().min(MAX_FIELD_ERRORS)])
            }
            _ => None,
        }
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Invalid { field, message } => Self::invalid(field, message),
            AppError::BadParameter { parameter, message } => {
                Self::BadRequest(vec![FieldError::new(parameter, message)])
            }
            AppError::NotFound(what) => Self::NotFound(what),
            AppError::UnknownAggregateType(name) => {
                Self::UnknownAggregateType(name.chars().take(64).collect())
            }
            AppError::Forbidden(missing) => Self::Forbidden(missing.as_str()),
            AppError::LastAdministrator => Self::LastAdministrator,
            AppError::WebhookLimitReached(reached) => Self::WebhookLimitReached(reached),
            AppError::EmailTaken
            | AppError::RoleNameTaken
            | AppError::User(_)
            | AppError::Role(_)
            | AppError::Session(_)
            | AppError::Webhook(_)
            | AppError::ServiceAccount(_)
            | AppError::SecondFactor(_) => Self::Conflict(error.to_string()),
            AppError::ConcurrencyConflict => Self::ConcurrencyConflict,
            AppError::InvalidCredentials => Self::InvalidCredentials,
            AppError::InvalidRefreshToken => Self::InvalidRefreshToken,
            AppError::TooManyRequests {
                retry_after_seconds,
            } => Self::TooManyRequests {
                retry_after_seconds,
            },
            AppError::Overloaded {
                retry_after_seconds,
            } => Self::Overloaded {
                retry_after_seconds,
            },
            AppError::Hashing(_)
            | AppError::Decode(_)
            | AppError::Redaction(_)
            | AppError::Database(_)
            | AppError::EventStore(_)
            | AppError::Unexpected(_) => Self::internal(error),
        }
    }
}

/// `Retry-After` of a `503 unavailable`: about how long a PostgreSQL
/// failover or restart takes.
const DATABASE_RETRY_AFTER_SECONDS: u64 = 5;

/// An RFC 7807 problem document (`application/problem+json`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `https://identity.example/problems/<kind>`; the kind is stable.
    #[serde(rename = "type")]
    type_uri: String,
    title: String,
    status: u16,
    detail: String,
    /// The fields that broke a rule, for 400 and 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<FieldError>>,
    /// For `step-up-required`: how recent, in seconds, the proof of a
    /// second factor must be (RFC 9470's `max_age`).
    #[serde(skip_serializing_if = "Option::is_none")]
    max_age: Option<i64>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout | Self::RequestHeadTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MalformedRequestHead => StatusCode::BAD_REQUEST,
            Self::RequestHeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NotFound(_) | Self::UnknownAggregateType(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_)
            | Self::ConcurrencyConflict
            | Self::LastAdministrator
            | Self::WebhookLimitReached(_) => StatusCode::CONFLICT,
            Self::NotYetProjected { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Unauthorized
            | Self::InvalidToken
            | Self::SessionCookieRefused
            | Self::InvalidCredentials
            | Self::InvalidRefreshToken
            | Self::StepUpRequired { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_)
            | Self::OriginRefused(_)
            | Self::SecondFactorEnrolmentRequired(_) => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded { .. } | Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Other(status) => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(error) = self {
            tracing::error!(error = ?error, "request failed");
        }
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, PROBLEM));
        match self {
            Self::TooManyRequests {
                retry_after_seconds,
            }
            | Self::Overloaded {
                retry_after_seconds,
            }
            | Self::Unavailable {
                retry_after_seconds,
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_seconds.to_string()));
            }
            Self::Unauthorized | Self::InvalidCredentials | Self::InvalidRefreshToken => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Self::InvalidToken => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#));
            }
            Self::StepUpRequired { max_age_seconds } => {
                let challenge = format!(
                    r#"Bearer error="insufficient_user_authentication", max_age={max_age_seconds}"#
                );
                response.insert_header((header::WWW_AUTHENTICATE, challenge));
            }
            _ => {}
        }
        response.body(self.problem_json())
    }
}

/// Error responses actix builds itself inside the app (a resource's own
/// `405`, an extractor's default error, ...) become problems too: an error
/// status with an empty body gets the problem of its status, the other
/// headers (`Allow`, `Retry-After`) kept. Responses the HTTP/1 dispatcher
/// writes before any service runs (`400` for an unparsable head, `431` for
/// a head over 128 KiB or 96 headers, `408` for a slow head) cannot be
/// reached from here: [`crate::request_head_problems`] answers those.
pub fn bare_errors_as_problems<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(as_problem)
}

fn as_problem<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let empty = matches!(
        response.response().body().size(),
        BodySize::None | BodySize::Sized(0)
    );
    if !empty {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    }
    let (request, bare) = response.into_parts();
    let mut problem = ApiError::for_status(bare.status()).error_response();
    for (name, value) in bare.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let problem = ServiceResponse::new(request, problem);
    Ok(ErrorHandlerResponse::Response(
        problem.map_into_right_body(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test as actix;
    use actix_web::{web, App};

    async fn answer(path: &str) -> (StatusCode, header::HeaderMap, serde_json::Value) {
        let app = actix::init_service(
            App::new()
                .wrap(bare_errors_as_problems())
                .route(
                    "/400",
                    web::get().to(|| async { HttpResponse::BadRequest().finish() }),
                )
                .route(
                    "/405",
                    web::get().to(|| async {
                        HttpResponse::MethodNotAllowed()
                            .insert_header((header::ALLOW, "GET"))
                            .finish()
                    }),
                )
                .route(
                    "/503",
                    web::get().to(|| async {
                        HttpResponse::ServiceUnavailable().json(serde_json::json!({"up": false}))
                    }),
                ),
        )
        .await;
        let response =
            actix::call_service(&app, actix::TestRequest::get().uri(path).to_request()).await;
        let (status, headers) = (response.status(), response.headers().clone());
        (status, headers, actix::read_body_json(response).await)
    }

    #[actix_web::test]
    async fn an_empty_error_response_becomes_the_problem_of_its_status() {
        let (status, headers, body) = answer("/400").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), PROBLEM);
        assert_eq!(body["type"], format!("{TYPE_BASE}bad-request"));
        assert_eq!(body["status"], 400);
        let (status, headers, body) = answer("/405").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers.get(header::ALLOW).unwrap(), "GET");
        assert_eq!(body["type"], format!("{TYPE_BASE}method-not-allowed"));
    }

    #[actix_web::test]
    async fn an_error_response_with_a_body_is_left_alone() {
        let (status, headers, body) = answer("/503").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            headers.get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        assert_eq!(body, serde_json::json!({"up": false}));
    }

    #[test]
    fn at_most_twenty_field_errors_are_reported() {
        let errors = (0..30)
            .map(|i| FieldError::new(format!("f{i}"), "bad"))
            .collect();
        let error = ApiError::Validation(errors);
        assert_eq!(error.field_errors().unwrap().len(), MAX_FIELD_ERRORS);
        let detail = error.to_string();
        assert!(
            detail.ends_with("f19: bad; and 10 more errors not shown"),
            "{detail}"
        );
        assert!(format!("{error:?}").len() < 1_000);
    }

    #[test]
    fn the_database_out_of_reach_is_a_503_with_retry_after_and_no_detail() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for cause in [
            AppError::Database(sqlx::Error::Io(refused)),
            AppError::Database(sqlx::Error::PoolTimedOut),
            AppError::EventStore(Box::new(sqlx::Error::PoolClosed)),
        ] {
            let error = ApiError::from(cause);
            assert_eq!(error.status_code(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(error.kind(), "unavailable");
            let response = error.error_response();
            assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "5");
        }
        let other = ApiError::from(AppError::Database(sqlx::Error::RowNotFound));
        assert_eq!(other.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
