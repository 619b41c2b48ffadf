//! The one error of the use cases. Domain rules keep their typed error;
//! storage failures keep their cause. The api maps each variant to a
//! problem once (`From<AppError> for ApiError`).

use cqrs_es::AggregateError;
use domain::webhook::WebhookLimitReached;
use domain::{
    RoleError, SecondFactorError, ServiceAccountError, SessionError, UserError, WebhookError,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A request field breaks a rule only the use case can check.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    /// A query parameter is malformed or names nothing: the one named.
    #[error("{parameter}: {message}")]
    BadParameter {
        parameter: &'static str,
        message: &'static str,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    /// An aggregate type the event contract does not have.
    #[error("aggregate type {0:?} not found")]
    UnknownAggregateType(String),
    /// The actor lacks a permission the change needs: the one named.
    #[error("this needs the permission {}", .0.as_str())]
    Forbidden(domain::Permission),
    /// The change would leave no active user holding every permission.
    #[error("this would leave no active user holding every permission")]
    LastAdministrator,
    #[error("the email is already in use")]
    EmailTaken,
    #[error("a role with this name exists")]
    RoleNameTaken,
    #[error(transparent)]
    User(UserError),
    #[error(transparent)]
    Role(RoleError),
    #[error(transparent)]
    Session(SessionError),
    #[error(transparent)]
    Webhook(WebhookError),
    #[error(transparent)]
    ServiceAccount(ServiceAccountError),
    #[error(transparent)]
    SecondFactor(SecondFactorError),
    /// `WEBHOOKS_MAX` webhooks exist: the one named.
    #[error(transparent)]
    WebhookLimitReached(#[from] WebhookLimitReached),
    /// Another writer appended to the aggregate first; the same request may succeed again.
    #[error("the aggregate was changed by another request; retry")]
    ConcurrencyConflict,
    #[error("the email or password is wrong, or the account cannot sign in")]
    InvalidCredentials,
    #[error("the refresh token is not valid")]
    InvalidRefreshToken,
    #[error("too many requests; retry in {retry_after_seconds} s")]
    TooManyRequests { retry_after_seconds: u64 },
    #[error("the service is busy; retry in {retry_after_seconds} s")]
    Overloaded { retry_after_seconds: u64 },
    #[error("password hashing failed")]
    Hashing(#[from] crate::password::HashingError),
    #[error("a stored event does not decode")]
    Decode(#[from] domain::DecodeError),
    #[error("a stored event could not be redacted")]
    Redaction(#[from] domain::RedactionError),
    #[error("the database failed")]
    Database(#[from] sqlx::Error),
    #[error("the event store failed")]
    EventStore(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("an unexpected failure")]
    Unexpected(#[from] anyhow::Error),
}

/// A domain error: how it reads as an [`AppError`].
pub trait DomainRule: std::error::Error + Send + Sync + 'static {
    fn into_app_error(self) -> AppError;
}

impl DomainRule for UserError {
    fn into_app_error(self) -> AppError {
        match self {
            // An erased user is gone, for every command but a repeated erase.
            UserError::NotFound | UserError::Erased => AppError::NotFound("user"),
            UserError::RoleNotAssigned => AppError::NotFound("role assignment"),
            rule => AppError::User(rule),
        }
    }
}

impl DomainRule for RoleError {
    fn into_app_error(self) -> AppError {
        match self {
            RoleError::NotFound => AppError::NotFound("role"),
            rule => AppError::Role(rule),
        }
    }
}

impl DomainRule for SessionError {
    fn into_app_error(self) -> AppError {
        match self {
            SessionError::NotFound => AppError::NotFound("session"),
            SessionError::HistoryUnavailable(unavailable) => {
                AppError::EventStore(Box::new(unavailable))
            }
            rule => AppError::Session(rule),
        }
    }
}

impl DomainRule for WebhookError {
    fn into_app_error(self) -> AppError {
        match self {
            WebhookError::NotFound => AppError::NotFound("webhook"),
            rule => AppError::Webhook(rule),
        }
    }
}

impl DomainRule for ServiceAccountError {
    fn into_app_error(self) -> AppError {
        match self {
            ServiceAccountError::NotFound => AppError::NotFound("service account"),
            ServiceAccountError::KeyNotFound => AppError::NotFound("API key"),
            ServiceAccountError::RoleNotAssigned => AppError::NotFound("role assignment"),
            rule => AppError::ServiceAccount(rule),
        }
    }
}

impl DomainRule for SecondFactorError {
    fn into_app_error(self) -> AppError {
        match self {
            SecondFactorError::NotFound => AppError::NotFound("second factor"),
            rule => AppError::SecondFactor(rule),
        }
    }
}

impl<E: DomainRule> From<AggregateError<E>> for AppError {
    fn from(error: AggregateError<E>) -> Self {
        match error {
            AggregateError::UserError(rule) => rule.into_app_error(),
            AggregateError::AggregateConflict => Self::ConcurrencyConflict,
            // The storage error itself, so its cause stays in the chain
            // (cqrs-es does not expose it as a source).
            AggregateError::DatabaseConnectionError(cause)
            | AggregateError::UnexpectedError(cause) => Self::EventStore(cause),
            other => Self::EventStore(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_rules_keep_their_type_and_not_found_names_the_thing() {
        let cases: Vec<(AppError, &str)> = vec![
            (
                AggregateError::UserError(UserError::NotFound).into(),
                "user not found",
            ),
            (
                AggregateError::UserError(UserError::Erased).into(),
                "user not found",
            ),
            (
                AggregateError::UserError(UserError::RoleNotAssigned).into(),
                "role assignment not found",
            ),
            (
                AggregateError::UserError(RoleError::NotFound).into(),
                "role not found",
            ),
            (
                AggregateError::UserError(SessionError::NotFound).into(),
                "session not found",
            ),
        ];
        for (error, message) in cases {
            assert!(matches!(error, AppError::NotFound(_)), "{error:?}");
            assert_eq!(error.to_string(), message);
        }
        let rule: AppError = AggregateError::UserError(UserError::AlreadyDeactivated).into();
        assert!(matches!(
            rule,
            AppError::User(UserError::AlreadyDeactivated)
        ));
        let raced: AppError = AggregateError::<UserError>::AggregateConflict.into();
        assert!(matches!(raced, AppError::ConcurrencyConflict));
    }

    #[test]
    fn a_storage_failure_keeps_its_cause() {
        let failed =
            AggregateError::<RoleError>::UnexpectedError(Box::new(sqlx::Error::PoolTimedOut));
        let error = AppError::from(failed);
        assert!(matches!(error, AppError::EventStore(_)));
        assert!(std::error::Error::source(&error).is_some());
    }
}
