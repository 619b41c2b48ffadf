use std::fmt;

use serde::{Deserialize, Serialize};

use crate::role::RoleName;
use crate::ValidationError;

/// A service account's name: the rules of a role's name (1 to 64 ASCII
/// letters, digits, '-', '_', '.' and ':'), since both name machinery, not
/// people. Not unique: the id is the account's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceAccountName(String);

impl ServiceAccountName {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        RoleName::parse(input).map(|name| Self(name.as_str().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::validation::string_value!(ServiceAccountName);

/// What an account or a key is for: the rules of a role's description
/// (trimmed, at most 500 characters, no control characters but line breaks
/// and tabs).
pub type ServiceAccountDescription = crate::RoleDescription;

/// The lowercase hex SHA-256 digest of an API key, computed by the caller.
/// The key itself never reaches the domain.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKeyHash(String);

impl ApiKeyHash {
    pub fn new(hex_digest: String) -> Self {
        Self(hex_digest)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The marker that replaces a digest in events published outside the service.
    pub fn redacted() -> Self {
        Self(crate::REDACTED.to_owned())
    }
}

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeyHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_follows_the_rules_of_a_role_name() {
        assert_eq!(
            ServiceAccountName::parse("  ci-deployer ")
                .unwrap()
                .as_str(),
            "ci-deployer"
        );
        for bad in ["", "with space", "ü", &"x".repeat(65)] {
            assert!(ServiceAccountName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<ServiceAccountName>("\"a b\"").is_err());
    }

    #[test]
    fn a_digest_never_shows_in_debug_output() {
        let hash = ApiKeyHash::new("0a08".repeat(16));
        assert_eq!(format!("{hash:?}"), "ApiKeyHash(..)");
    }
}
