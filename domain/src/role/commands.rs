use std::collections::BTreeSet;

use uuid::Uuid;

use super::values::{Permission, RoleDescription, RoleName};

/// Requests to change a [`Role`](super::Role). Values arrive already validated.
#[derive(Debug, Clone, PartialEq, Eq, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum RoleCommand {
    Create {
        role_id: Uuid,
        name: RoleName,
        description: RoleDescription,
        permissions: BTreeSet<Permission>,
    },
    /// Replaces the whole set.
    SetPermissions {
        permissions: BTreeSet<Permission>,
    },
    Delete,
}
