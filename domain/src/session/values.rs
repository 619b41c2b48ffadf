use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// The lowercase hex SHA-256 digest of a refresh token, computed by the caller.
/// The token itself never reaches the domain.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RefreshTokenHash(String);

impl RefreshTokenHash {
    const REDACTED: &'static str = crate::REDACTED;

    pub fn new(hex_digest: String) -> Self {
        Self(hex_digest)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The marker that replaces a hash in events published outside the service.
    pub fn redacted() -> Self {
        Self(Self::REDACTED.to_owned())
    }

    pub fn is_redacted(&self) -> bool {
        self.0 == Self::REDACTED
    }
}

impl fmt::Debug for RefreshTokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshTokenHash(..)")
    }
}

/// How long a refresh token stays acceptable after it was rotated away, so
/// that refreshes racing with one token (two tabs, a client retrying a lost
/// response) are not taken for a stolen token. Zero: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReuseInterval(TimeDelta);

impl ReuseInterval {
    pub const NONE: Self = Self(TimeDelta::zero());

    /// A negative interval is taken as none.
    pub fn new(interval: TimeDelta) -> Self {
        Self(interval.max(TimeDelta::zero()))
    }

    /// Whether a token rotated away at `superseded_at` is still acceptable at
    /// `now`: strictly less than the interval later. A `now` before
    /// `superseded_at` (another process's clock ahead) counts as within.
    pub fn covers(self, superseded_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.0 > TimeDelta::zero() && now.signed_duration_since(superseded_at) < self.0
    }
}

/// Why a session was ended before it expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    LoggedOut,
    /// Ended by the user or an operator.
    Revoked,
    /// An already rotated refresh token was presented: the token may be stolen.
    RefreshTokenReused,
    UserDeactivated,
    UserLocked,
    PasswordChanged,
    /// The user's data was erased.
    UserErased,
}

impl RevocationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoggedOut => "logged_out",
            Self::Revoked => "revoked",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::UserDeactivated => "user_deactivated",
            Self::UserLocked => "user_locked",
            Self::PasswordChanged => "password_changed",
            Self::UserErased => "user_erased",
        }
    }
}

/// Which deadline a session ran past.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryReason {
    /// Its `expires_at`.
    Absolute,
    /// Its last activity plus the idle timeout.
    Idle,
}

impl ExpiryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Absolute => "absolute",
            Self::Idle => "idle",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn refresh_token_hash_keeps_its_value_but_hides_it_from_debug() {
        let hash = RefreshTokenHash::new(DIGEST.into());
        assert_eq!(hash.as_str(), DIGEST);
        assert_eq!(format!("{hash:?}"), "RefreshTokenHash(..)");
        assert!(!hash.is_redacted());
    }

    #[test]
    fn refresh_token_hash_redacted_marker() {
        let hash = RefreshTokenHash::redacted();
        assert_eq!(hash.as_str(), "[redacted]");
        assert!(hash.is_redacted());
    }

    #[test]
    fn refresh_token_hash_serializes_transparently() {
        let hash = RefreshTokenHash::new(DIGEST.into());
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json, format!("\"{DIGEST}\""));
        assert_eq!(
            serde_json::from_str::<RefreshTokenHash>(&json).unwrap(),
            hash
        );
    }

    #[test]
    fn a_reuse_interval_covers_strictly_less_than_its_length() {
        let rotated = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000);
        let interval = ReuseInterval::new(TimeDelta::seconds(10));
        for (offset, covered) in [(-3, true), (0, true), (9, true), (10, false), (11, false)] {
            let now = rotated + TimeDelta::seconds(offset);
            assert_eq!(interval.covers(rotated, now), covered, "{offset} s");
        }
    }

    #[test]
    fn no_reuse_interval_covers_nothing() {
        let rotated = DateTime::<Utc>::UNIX_EPOCH;
        let negative = ReuseInterval::new(TimeDelta::seconds(-5));
        assert_eq!(negative, ReuseInterval::NONE);
        for interval in [ReuseInterval::NONE, ReuseInterval::default(), negative] {
            for offset in [-1, 0, 1] {
                let now = rotated + TimeDelta::seconds(offset);
                assert!(!interval.covers(rotated, now), "{offset} s");
            }
        }
    }

    #[test]
    fn revocation_reason_names_match_serde() {
        for reason in [
            RevocationReason::LoggedOut,
            RevocationReason::Revoked,
            RevocationReason::RefreshTokenReused,
            RevocationReason::UserDeactivated,
            RevocationReason::UserLocked,
            RevocationReason::PasswordChanged,
            RevocationReason::UserErased,
        ] {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
            assert_eq!(
                serde_json::from_str::<RevocationReason>(&json).unwrap(),
                reason
            );
        }
        assert_eq!(
            RevocationReason::RefreshTokenReused.as_str(),
            "refresh_token_reused"
        );
    }

    #[test]
    fn expiry_reason_names_match_serde() {
        for reason in [ExpiryReason::Absolute, ExpiryReason::Idle] {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
            assert_eq!(serde_json::from_str::<ExpiryReason>(&json).unwrap(), reason);
        }
    }
}
