//! Rules about power, across users and roles: nobody grants what they do
//! not hold (Kubernetes RBAC's escalation prevention), and at least one
//! active user always holds every permission. Pure: the application layer
//! loads the users and roles involved and asks.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::Permission;

/// The first permission of `needed` that `held` lacks, if any.
pub fn first_missing(
    held: &BTreeSet<Permission>,
    needed: impl IntoIterator<Item = Permission>,
) -> Option<Permission> {
    needed
        .into_iter()
        .find(|permission| !held.contains(permission))
}

/// What a user holds power through: active or not, and their roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub active: bool,
    pub roles: BTreeSet<Uuid>,
}

/// The live roles and what each grants; a deleted role is absent.
pub type Grants = BTreeMap<Uuid, BTreeSet<Permission>>;

/// A command that can take power away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerChange {
    Deactivate {
        user_id: Uuid,
    },
    /// Erasing a user ends their power as deactivating does, for good.
    Erase {
        user_id: Uuid,
    },
    Unassign {
        user_id: Uuid,
        role_id: Uuid,
    },
    DeleteRole {
        role_id: Uuid,
    },
    SetPermissions {
        role_id: Uuid,
        permissions: BTreeSet<Permission>,
    },
}

impl PowerChange {
    /// The user this change affects directly, if it is about one user.
    pub fn user(&self) -> Option<Uuid> {
        match self {
            Self::Deactivate { user_id }
            | Self::Erase { user_id }
            | Self::Unassign { user_id, .. } => Some(*user_id),
            Self::DeleteRole { .. } | Self::SetPermissions { .. } => None,
        }
    }

    fn apply(&self, holders: &mut BTreeMap<Uuid, Holder>, grants: &mut Grants) {
        match self {
            Self::Deactivate { user_id } | Self::Erase { user_id } => {
                if let Some(holder) = holders.get_mut(user_id) {
                    holder.active = false;
                }
            }
            Self::Unassign { user_id, role_id } => {
                if let Some(holder) = holders.get_mut(user_id) {
                    holder.roles.remove(role_id);
                }
            }
            Self::DeleteRole { role_id } => {
                grants.remove(role_id);
            }
            Self::SetPermissions {
                role_id,
                permissions,
            } => {
                grants.insert(*role_id, permissions.clone());
            }
        }
    }
}

/// Whether some active user among `holders` would still hold every
/// permission once `change` is made.
pub fn keeps_a_full_administrator(
    mut holders: BTreeMap<Uuid, Holder>,
    mut grants: Grants,
    change: &PowerChange,
) -> bool {
    change.apply(&mut holders, &mut grants);
    holders
        .values()
        .filter(|holder| holder.active)
        .any(|holder| holds_everything(holder, &grants))
}

fn holds_everything(holder: &Holder, grants: &Grants) -> bool {
    let held: BTreeSet<Permission> = holder
        .roles
        .iter()
        .filter_map(|role_id| grants.get(role_id))
        .flatten()
        .copied()
        .collect();
    first_missing(&held, Permission::ALL.iter().copied()).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: Uuid = Uuid::from_u128(0xa);
    const HALF: Uuid = Uuid::from_u128(0xb);
    const REST: Uuid = Uuid::from_u128(0xc);
    const ALICE: Uuid = Uuid::from_u128(1);
    const BOB: Uuid = Uuid::from_u128(2);

    fn all() -> BTreeSet<Permission> {
        Permission::ALL.iter().copied().collect()
    }

    fn grants() -> Grants {
        let (half, rest) = Permission::ALL.split_at(Permission::ALL.len() / 2);
        Grants::from([
            (ADMIN, all()),
            (HALF, half.iter().copied().collect()),
            (REST, rest.iter().copied().collect()),
        ])
    }

    fn holder(active: bool, roles: &[Uuid]) -> Holder {
        Holder {
            active,
            roles: roles.iter().copied().collect(),
        }
    }

    #[test]
    fn first_missing_names_what_the_caller_lacks() {
        let held = BTreeSet::from([Permission::UsersRead, Permission::RolesWrite]);
        assert_eq!(first_missing(&held, [Permission::UsersRead]), None);
        assert_eq!(
            first_missing(&held, [Permission::RolesWrite, Permission::UsersWrite]),
            Some(Permission::UsersWrite)
        );
        let almost: BTreeSet<Permission> = all()
            .into_iter()
            .filter(|p| *p != Permission::AuditRead)
            .collect();
        assert_eq!(
            first_missing(&almost, Permission::ALL.iter().copied()),
            Some(Permission::AuditRead)
        );
    }

    #[test]
    fn a_change_is_allowed_only_while_an_active_user_keeps_every_permission() {
        let one_admin = || BTreeMap::from([(ALICE, holder(true, &[ADMIN]))]);
        let two_admins = || {
            BTreeMap::from([
                (ALICE, holder(true, &[ADMIN])),
                (BOB, holder(true, &[ADMIN])),
            ])
        };
        let split_admin = || BTreeMap::from([(ALICE, holder(true, &[HALF, REST]))]);
        let cases: Vec<(&str, BTreeMap<Uuid, Holder>, PowerChange, bool)> = vec![
            (
                "the only administrator deactivated",
                one_admin(),
                PowerChange::Deactivate { user_id: ALICE },
                false,
            ),
            (
                "one of two administrators deactivated",
                two_admins(),
                PowerChange::Deactivate { user_id: BOB },
                true,
            ),
            (
                "the only administrator erased",
                one_admin(),
                PowerChange::Erase { user_id: ALICE },
                false,
            ),
            (
                "one of two administrators erased",
                two_admins(),
                PowerChange::Erase { user_id: BOB },
                true,
            ),
            (
                "the only administrator loses the role",
                one_admin(),
                PowerChange::Unassign {
                    user_id: ALICE,
                    role_id: ADMIN,
                },
                false,
            ),
            (
                "another role unassigned",
                one_admin(),
                PowerChange::Unassign {
                    user_id: ALICE,
                    role_id: HALF,
                },
                true,
            ),
            (
                "the admin role deleted",
                two_admins(),
                PowerChange::DeleteRole { role_id: ADMIN },
                false,
            ),
            (
                "the admin role shrunk by one permission",
                one_admin(),
                PowerChange::SetPermissions {
                    role_id: ADMIN,
                    permissions: all().into_iter().skip(1).collect(),
                },
                false,
            ),
            (
                "every permission through two roles",
                split_admin(),
                PowerChange::DeleteRole { role_id: ADMIN },
                true,
            ),
            (
                "one of the two roles deleted",
                split_admin(),
                PowerChange::DeleteRole { role_id: REST },
                false,
            ),
            (
                "an inactive administrator does not count",
                BTreeMap::from([
                    (ALICE, holder(false, &[ADMIN])),
                    (BOB, holder(true, &[ADMIN])),
                ]),
                PowerChange::Deactivate { user_id: BOB },
                false,
            ),
        ];
        for (case, holders, change, allowed) in cases {
            assert_eq!(
                keeps_a_full_administrator(holders, grants(), &change),
                allowed,
                "{case}"
            );
        }
    }
}
