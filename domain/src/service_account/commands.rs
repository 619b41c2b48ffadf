use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::values::{ApiKeyHash, ServiceAccountDescription, ServiceAccountName};
use crate::Permission;

/// Requests to change a [`ServiceAccount`](super::ServiceAccount). Values
/// arrive already validated; rules about who may ask are the application's.
#[derive(Debug, Clone, PartialEq, Eq, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum ServiceAccountCommand {
    Create {
        service_account_id: Uuid,
        name: ServiceAccountName,
        description: ServiceAccountDescription,
    },
    /// Each `Some` field is set; the rest stay.
    Update {
        name: Option<ServiceAccountName>,
        description: Option<ServiceAccountDescription>,
        enabled: Option<bool>,
    },
    AssignRole {
        role_id: Uuid,
    },
    UnassignRole {
        role_id: Uuid,
    },
    IssueKey {
        key: NewKey,
    },
    /// Issues `key` and lets the key it replaces work until `overlap_until`
    /// (or its own expiry, if earlier).
    RotateKey {
        key_id: Uuid,
        key: NewKey,
        overlap_until: DateTime<Utc>,
    },
    RevokeKey {
        key_id: Uuid,
    },
    /// Ends the account for good: its keys and roles go with it.
    Erase,
}

/// A key to issue: everything but the secret, which stays with the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub key_id: Uuid,
    pub description: ServiceAccountDescription,
    pub scope: BTreeSet<Permission>,
    pub expires_at: DateTime<Utc>,
    pub secret_hash: ApiKeyHash,
}
