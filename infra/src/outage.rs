//! Whether an error means PostgreSQL is out of reach (a connection cut or
//! refused, the pool out of connections, the server shutting down, or
//! something between that answers what PostgreSQL never would, as a proxy
//! whose backend is down does) rather than a fault of the request or of the
//! code: the api answers the first with `503` and `Retry-After`, and it
//! passes by itself.

use std::error::Error;

/// SQLSTATE classes and codes of a server that cannot serve now:
/// connection exceptions, and shutdown or not-yet-started states.
const UNAVAILABLE_STATES: &[&str] = &["08", "57P01", "57P02", "57P03"];

/// Whether `error`, or any error in its source chain, is PostgreSQL being
/// unreachable.
pub fn database_unavailable(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error
            .downcast_ref::<sqlx::Error>()
            .is_some_and(sqlx_unavailable)
            || error.downcast_ref::<std::io::Error>().is_some()
        {
            return true;
        }
        current = error.source();
    }
    false
}

fn sqlx_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        // A reply that is no PostgreSQL message (e.g. "unexpected response
        // from SSLRequest: 0x00" from a proxy with no backend).
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            UNAVAILABLE_STATES
                .iter()
                .any(|state| code.starts_with(state))
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::database_unavailable;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapped(#[source] sqlx::Error);

    #[test]
    fn a_cut_connection_or_an_exhausted_pool_is_unavailable_anywhere_in_the_chain() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(database_unavailable(&sqlx::Error::Io(refused)));
        assert!(database_unavailable(&Wrapped(sqlx::Error::PoolTimedOut)));
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(sqlx::Error::PoolClosed);
        assert!(database_unavailable(boxed.as_ref()));
        let stray = sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into());
        assert!(database_unavailable(&Wrapped(stray)));
    }

    #[test]
    fn other_errors_are_not() {
        assert!(!database_unavailable(&sqlx::Error::RowNotFound));
        assert!(!database_unavailable(&Wrapped(
            sqlx::Error::ColumnNotFound("x".into())
        )));
    }
}
