//! The worker's own metrics (its consumer's are `bus::metrics`).
//! Registered at start, so they exist at zero before the first lockout.

use metrics::{describe_counter, Unit};

/// Failed logins stored (a redelivered one is not counted twice).
pub const LOGIN_FAILURES_RECORDED: &str = "worker_login_failures_recorded_total";
/// Locks written.
pub const USERS_LOCKED: &str = "worker_users_locked_total";
/// `session.expired` events written.
pub const SESSIONS_EXPIRED: &str = "worker_sessions_expired_total";

/// The metrics registered at start (at zero).
pub const NAMES: &[&str] = &[LOGIN_FAILURES_RECORDED, USERS_LOCKED, SESSIONS_EXPIRED];

/// Describes the worker's metrics and starts them at zero.
pub fn register() {
    describe_counter!(
        LOGIN_FAILURES_RECORDED,
        Unit::Count,
        "Failed logins stored by the lockout policy (a redelivered failure counts once)."
    );
    describe_counter!(
        USERS_LOCKED,
        Unit::Count,
        "User locks written after repeated failed logins."
    );
    describe_counter!(
        SESSIONS_EXPIRED,
        Unit::Count,
        "session.expired events written by the expiry scan."
    );
    for name in NAMES {
        metrics::counter!(*name).increment(0);
    }
}
