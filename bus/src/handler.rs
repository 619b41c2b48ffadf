//! What a consumer hands its events to, and how that can fail.

use std::error::Error;

use async_trait::async_trait;

use crate::Envelope;

/// Applies consumed events (e.g. to read models).
#[async_trait]
pub trait BatchHandler: Send + Sync {
    /// Apply the events; return Ok only after the work is committed.
    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError>;
}

/// Any error, boxed, as a [`HandlerError`] keeps it.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Failure reported by a [`BatchHandler`], with its cause. Whether it is
/// worth trying the event again decides what the consumer does with it.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The same event may succeed later (database or broker unavailable, a
    /// concurrent writer won): requeued after a backoff, and dead-lettered
    /// by the queue's delivery limit if it never does.
    #[error("transient failure")]
    Transient(#[source] BoxError),
    /// The event can never succeed (its payload does not decode, an id is
    /// malformed): dead-lettered at once, without retries.
    #[error("permanent failure")]
    Permanent(#[source] BoxError),
}

impl HandlerError {
    pub fn transient(cause: impl Error + Send + Sync + 'static) -> Self {
        Self::Transient(Box::new(cause))
    }

    pub fn permanent(cause: impl Error + Send + Sync + 'static) -> Self {
        Self::Permanent(Box::new(cause))
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }

    /// The cause and each of its sources, `": "`-separated: what the logs
    /// and a dead letter's reason header say.
    pub fn reason(&self) -> String {
        let (Self::Transient(cause) | Self::Permanent(cause)) = self;
        let mut reason = cause.to_string();
        let mut source = cause.source();
        while let Some(error) = source {
            reason.push_str(": ");
            reason.push_str(&error.to_string());
            source = error.source();
        }
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn reason_is_the_display_chain_of_the_cause() {
        let cause = Outer(std::io::Error::other("inner"));
        let error = HandlerError::permanent(cause);
        assert!(error.is_permanent());
        assert_eq!(error.reason(), "outer: inner");
        assert_eq!(error.to_string(), "permanent failure");
        assert!(error.source().is_some(), "the cause is kept");
    }

    #[test]
    fn transient_is_not_permanent() {
        let error = HandlerError::transient(std::io::Error::other("down"));
        assert!(!error.is_permanent());
        assert_eq!(error.reason(), "down");
    }
}
