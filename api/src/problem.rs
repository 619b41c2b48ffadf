//! The one place where errors become HTTP: every failure a client can see is
//! an `ApiError`, answered as RFC 7807 `application/problem+json`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use app::AppError;
use serde::Serialize;

const TYPE_BASE: &str = "https://identity.example/problems/";
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

#[derive(Debug, thiserror::Error)]
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
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("the aggregate was changed by another request; retry")]
    ConcurrencyConflict,
    #[error("the read model did not reach position {position} within {waited_ms} ms")]
    NotYetProjected { position: i64, waited_ms: u128 },
    #[error(
        "authentication is required: send a valid access token as `Authorization: Bearer <token>`"
    )]
    Unauthorized,
    #[error("the email or password is wrong, or the account cannot sign in")]
    InvalidCredentials,
    #[error("the refresh token is not valid")]
    InvalidRefreshToken,
    #[error("this needs the permission {0}")]
    Forbidden(&'static str),
    #[error("too many requests; retry in {retry_after_seconds} s")]
    TooManyRequests { retry_after_seconds: u64 },
    #[error("the service is busy; retry in {retry_after_seconds} s")]
    Overloaded { retry_after_seconds: u64 },
    #[error("an internal error occurred")]
    Internal(#[source] anyhow::Error),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    pub fn invalid(field: &str, message: impl ToString) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// Stable, documented problem type (the last segment of `type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed-json",
            Self::BadRequest(_) => "bad-request",
            Self::Validation(_) => "validation-failed",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict(_) => "conflict",
            Self::ConcurrencyConflict => "concurrency-conflict",
            Self::NotYetProjected { .. } => "projection-timeout",
            Self::Unauthorized => "unauthorized",
            Self::InvalidCredentials => "invalid-credentials",
            Self::InvalidRefreshToken => "invalid-refresh-token",
            Self::Forbidden(_) => "forbidden",
            Self::TooManyRequests { .. } => "too-many-requests",
            Self::Overloaded { .. } => "overloaded",
            Self::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "Malformed JSON",
            Self::BadRequest(_) => "Bad request",
            Self::Validation(_) => "Validation failed",
            Self::PayloadTooLarge { .. } => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::NotFound(_) => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Conflict(_) => "Conflict",
            Self::ConcurrencyConflict => "Concurrency conflict",
            Self::NotYetProjected { .. } => "Read model not yet up to date",
            Self::Unauthorized => "Unauthorized",
            Self::InvalidCredentials => "Invalid credentials",
            Self::InvalidRefreshToken => "Invalid refresh token",
            Self::Forbidden(_) => "Forbidden",
            Self::TooManyRequests { .. } => "Too many requests",
            Self::Overloaded { .. } => "Service overloaded",
            Self::Internal(_) => "Internal error",
        }
    }

    fn field_errors(&self) -> Option<&[FieldError]> {
        match self {
            Self::BadRequest(errors) | Self::Validation(errors) => Some(errors),
            _ => None,
        }
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Invalid { field, message } => Self::invalid(field, message),
            AppError::NotFound(what) => Self::NotFound(what),
            AppError::EmailTaken
            | AppError::RoleNameTaken
            | AppError::User(_)
            | AppError::Role(_)
            | AppError::Session(_) => Self::Conflict(error.to_string()),
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
            | AppError::Database(_)
            | AppError::EventStore(_)
            | AppError::Unexpected(_) => Self::internal(error),
        }
    }
}

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
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) | Self::ConcurrencyConflict => StatusCode::CONFLICT,
            Self::NotYetProjected { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Unauthorized | Self::InvalidCredentials | Self::InvalidRefreshToken => {
                StatusCode::UNAUTHORIZED
            }
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(error) = self {
            tracing::error!(error = ?error, "request failed");
        }
        let status = self.status_code();
        let problem = Problem {
            type_uri: format!("{TYPE_BASE}{}", self.kind()),
            title: self.title().to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: self.field_errors().map(<[FieldError]>::to_vec),
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, PROBLEM));
        match self {
            Self::TooManyRequests {
                retry_after_seconds,
            }
            | Self::Overloaded {
                retry_after_seconds,
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_seconds.to_string()));
            }
            Self::Unauthorized | Self::InvalidCredentials | Self::InvalidRefreshToken => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&problem).unwrap_or_default())
    }
}
