use std::fmt;

use serde::{Deserialize, Serialize};

/// The lowercase hex SHA-256 digest of a refresh token, computed by the caller.
/// The token itself never reaches the domain.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RefreshTokenHash(String);

impl RefreshTokenHash {
    const REDACTED: &'static str = "[redacted]";

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
    fn revocation_reason_names_match_serde() {
        for reason in [
            RevocationReason::LoggedOut,
            RevocationReason::Revoked,
            RevocationReason::RefreshTokenReused,
            RevocationReason::UserDeactivated,
            RevocationReason::UserLocked,
            RevocationReason::PasswordChanged,
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
