use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::values::{RefreshTokenHash, ReuseInterval, RevocationReason};

/// Requests to change a [`Session`](super::Session). Values arrive already validated.
#[derive(Debug, Clone, PartialEq, Eq, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum SessionCommand {
    Start {
        session_id: Uuid,
        user_id: Uuid,
        refresh_token_hash: RefreshTokenHash,
        started_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        idle_timeout_seconds: i64,
        ip: Option<String>,
        user_agent: Option<String>,
        /// The person proved a second factor too (not just a password).
        second_factor_used: bool,
    },
    /// Rotates the refresh token: `presented` must be the current one, or one
    /// rotated away less than `reuse_interval` ago; `next` replaces the current one.
    Refresh {
        presented: RefreshTokenHash,
        next: RefreshTokenHash,
        reuse_interval: ReuseInterval,
        now: DateTime<Utc>,
    },
    Revoke {
        reason: RevocationReason,
        now: DateTime<Utc>,
    },
    /// Records that the session ran past its absolute or idle deadline.
    Expire { now: DateTime<Utc> },
}
