use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validation::{check_length, string_value, ValidationError};

/// What a role allows. Serialized as its `resource:action` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Permission {
    UsersRead,
    UsersWrite,
    RolesRead,
    RolesWrite,
    SessionsRead,
    SessionsRevoke,
    AuditRead,
    /// Erase a person's data (`POST /v1/users/{id}/erase`).
    UsersErase,
    /// Register, read, change and delete webhooks (`/v1/webhooks`).
    WebhooksWrite,
    /// Read service accounts and their keys (`/v1/service-accounts`).
    ServiceAccountsRead,
    /// Create, change and erase service accounts; issue, rotate and revoke keys.
    ServiceAccountsWrite,
}

impl Permission {
    pub const ALL: &'static [Permission] = &[
        Self::UsersRead,
        Self::UsersWrite,
        Self::RolesRead,
        Self::RolesWrite,
        Self::SessionsRead,
        Self::SessionsRevoke,
        Self::AuditRead,
        Self::UsersErase,
        Self::WebhooksWrite,
        Self::ServiceAccountsRead,
        Self::ServiceAccountsWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsersRead => "users:read",
            Self::UsersWrite => "users:write",
            Self::RolesRead => "roles:read",
            Self::RolesWrite => "roles:write",
            Self::SessionsRead => "sessions:read",
            Self::SessionsRevoke => "sessions:revoke",
            Self::AuditRead => "audit:read",
            Self::UsersErase => "users:erase",
            Self::WebhooksWrite => "webhooks:write",
            Self::ServiceAccountsRead => "service_accounts:read",
            Self::ServiceAccountsWrite => "service_accounts:write",
        }
    }

    /// Exact match on the name: no trimming, no case folding.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .iter()
            .copied()
            .find(|permission| permission.as_str() == input)
            .ok_or_else(|| ValidationError::unknown_permission(input))
    }
}

impl TryFrom<String> for Permission {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Permission> for &'static str {
    fn from(value: Permission) -> Self {
        value.as_str()
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trimmed name of 1 to 64 ASCII letters, digits, '-', '_', '.' and ':'.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoleName(String);

impl RoleName {
    pub const MAX_LEN: usize = 64;
    const ALLOWED: &'static str = "ASCII letters, digits, '-', '_', '.' and ':'";

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let trimmed = input.trim();
        check_length(trimmed, Self::MAX_LEN)?;
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
        if !trimmed.chars().all(allowed) {
            return Err(ValidationError::InvalidCharacters {
                allowed: Self::ALLOWED,
            });
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name lowercased: two roles with the same key cannot coexist.
    pub fn uniqueness_key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A trimmed text of at most 500 characters, possibly empty. Line breaks and tabs
/// are kept; other control characters are rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoleDescription(String);

impl RoleDescription {
    pub const MAX_LEN: usize = 500;

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let trimmed = input.trim();
        if trimmed.chars().count() > Self::MAX_LEN {
            return Err(ValidationError::TooLong { max: Self::MAX_LEN });
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(ValidationError::ControlCharacters);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

string_value!(RoleName);
string_value!(RoleDescription);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn permission_names() {
        let names: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "users:read",
                "users:write",
                "roles:read",
                "roles:write",
                "sessions:read",
                "sessions:revoke",
                "audit:read",
                "users:erase",
                "webhooks:write",
                "service_accounts:read",
                "service_accounts:write",
            ]
        );
        assert_eq!(Permission::UsersWrite.to_string(), "users:write");
    }

    #[test]
    fn permission_parse_round_trips_every_permission() {
        for permission in Permission::ALL {
            assert_eq!(Permission::parse(permission.as_str()), Ok(*permission));
        }
    }

    #[test]
    fn permission_parse_rejects_unknown_names_and_names_them() {
        for input in ["x", "", "Users:Read", " users:read", "users:*"] {
            let error = Permission::parse(input).unwrap_err();
            assert_eq!(
                error,
                ValidationError::UnknownPermission {
                    value: input.to_owned()
                }
            );
            assert!(error.to_string().contains(&format!("{input:?}")), "{error}");
        }
        assert_eq!(
            Permission::parse("x").unwrap_err().to_string(),
            "unknown permission \"x\""
        );
    }

    #[test]
    fn permission_serializes_as_its_name_and_validates_on_deserialize() {
        let json = serde_json::to_string(&Permission::SessionsRevoke).unwrap();
        assert_eq!(json, "\"sessions:revoke\"");
        assert_eq!(
            serde_json::from_str::<Permission>(&json).unwrap(),
            Permission::SessionsRevoke
        );
        let error = serde_json::from_str::<Permission>("\"users:delete\"").unwrap_err();
        assert!(error.to_string().contains("users:delete"), "{error}");
    }

    #[test]
    fn permission_set_serializes_as_a_sorted_array() {
        let set = BTreeSet::from([Permission::AuditRead, Permission::UsersRead]);
        assert_eq!(
            serde_json::to_value(&set).unwrap(),
            serde_json::json!(["users:read", "audit:read"])
        );
    }

    #[test]
    fn role_name_is_trimmed() {
        let name = RoleName::parse("  support-agent  ").unwrap();
        assert_eq!(name.as_str(), "support-agent");
        assert_eq!(name.to_string(), "support-agent");
    }

    #[test]
    fn role_name_accepts_every_allowed_character() {
        assert!(RoleName::parse("Az09-_.:").is_ok());
    }

    #[test]
    fn role_name_rejects_empty_and_blank() {
        assert_eq!(RoleName::parse(""), Err(ValidationError::Empty));
        assert_eq!(RoleName::parse("  "), Err(ValidationError::Empty));
    }

    #[test]
    fn role_name_accepts_64_and_rejects_65_characters() {
        assert!(RoleName::parse(&"a".repeat(64)).is_ok());
        assert_eq!(
            RoleName::parse(&"a".repeat(65)),
            Err(ValidationError::TooLong { max: 64 })
        );
    }

    #[test]
    fn role_name_rejects_other_characters() {
        for input in ["support agent", "admin/all", "é", "a\nb", "role*", "a@b"] {
            assert_eq!(
                RoleName::parse(input),
                Err(ValidationError::InvalidCharacters {
                    allowed: RoleName::ALLOWED
                }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn role_name_uniqueness_key_is_lowercase() {
        let name = RoleName::parse("Support.Agent").unwrap();
        assert_eq!(name.uniqueness_key(), "support.agent");
        assert_eq!(name.as_str(), "Support.Agent");
    }

    #[test]
    fn role_name_serde_validates() {
        let name = RoleName::parse("admin").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"admin\"");
        assert_eq!(serde_json::from_str::<RoleName>("\"admin\"").unwrap(), name);
        assert!(serde_json::from_str::<RoleName>("\"not valid\"").is_err());
    }

    #[test]
    fn role_description_may_be_empty() {
        assert_eq!(RoleDescription::parse("   ").unwrap().as_str(), "");
        assert!(RoleDescription::default().is_empty());
    }

    #[test]
    fn role_description_is_trimmed_and_keeps_line_breaks() {
        let description = RoleDescription::parse("  Reads users.\nNothing else.\t ").unwrap();
        assert_eq!(description.as_str(), "Reads users.\nNothing else.");
    }

    #[test]
    fn role_description_accepts_500_and_rejects_501_characters() {
        assert!(RoleDescription::parse(&"é".repeat(500)).is_ok());
        assert_eq!(
            RoleDescription::parse(&"a".repeat(501)),
            Err(ValidationError::TooLong { max: 500 })
        );
    }

    #[test]
    fn role_description_rejects_other_control_characters() {
        for input in ["a\u{0}b", "a\u{1b}[31m", "a\u{7f}"] {
            assert_eq!(
                RoleDescription::parse(input),
                Err(ValidationError::ControlCharacters),
                "{input:?}"
            );
        }
    }

    #[test]
    fn role_description_serde_validates() {
        let description = RoleDescription::parse("Support staff").unwrap();
        assert_eq!(
            serde_json::to_string(&description).unwrap(),
            "\"Support staff\""
        );
        assert_eq!(
            serde_json::from_str::<RoleDescription>("\"Support staff\"").unwrap(),
            description
        );
        assert!(
            serde_json::from_str::<RoleDescription>(&format!("\"{}\"", "a".repeat(501))).is_err()
        );
    }
}
