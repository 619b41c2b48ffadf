//! `user_roles_view`: one row per role a user holds, from the user's
//! assignment events. The rows have no sequence of their own: they change
//! only together with the user's row, whose sequence guards them.

use chrono::{DateTime, Utc};
use domain::UserEvent;
use uuid::Uuid;

use super::{Column, EventContext, Value};

/// A role a user holds, since the assignment in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRoleRow {
    pub user_id: Uuid,
    pub role_id: Uuid,
    pub assigned_at: DateTime<Utc>,
    pub global_position: i64,
}

impl UserRoleRow {
    /// The columns that identify a row.
    pub const KEY: &'static [&'static str] = &["user_id", "role_id"];

    pub fn columns(&self) -> Vec<Column<'_>> {
        vec![
            Column::new("user_id", Value::Uuid(self.user_id)),
            Column::new("role_id", Value::Uuid(self.role_id)),
            Column::new("assigned_at", Value::Time(self.assigned_at)),
            Column::new("global_position", Value::BigInt(self.global_position)),
        ]
    }
}

/// A change of the roles a user holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    /// Added unless the user holds the role already (then the earlier
    /// assignment stays in force).
    Assigned(UserRoleRow),
    Unassigned {
        user_id: Uuid,
        role_id: Uuid,
    },
}

/// The membership change a user event makes, if any.
pub fn reduce(event: &UserEvent, at: &EventContext) -> Option<Membership> {
    let user_id = at.aggregate_id;
    match event {
        UserEvent::RoleAssigned { role_id } => Some(Membership::Assigned(UserRoleRow {
            user_id,
            role_id: *role_id,
            assigned_at: at.occurred_at,
            global_position: at.global_position,
        })),
        UserEvent::RoleUnassigned { role_id } => Some(Membership::Unassigned {
            user_id,
            role_id: *role_id,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at() -> EventContext {
        EventContext {
            aggregate_id: Uuid::from_u128(1),
            sequence: 4,
            global_position: 40,
            occurred_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        }
    }

    #[test]
    fn given_a_user_when_a_role_is_assigned_then_the_user_holds_it_since_then() {
        let role_id = Uuid::from_u128(7);
        let membership = reduce(&UserEvent::RoleAssigned { role_id }, &at());
        assert_eq!(
            membership,
            Some(Membership::Assigned(UserRoleRow {
                user_id: at().aggregate_id,
                role_id,
                assigned_at: at().occurred_at,
                global_position: 40,
            }))
        );
    }

    #[test]
    fn given_a_user_when_a_role_is_unassigned_then_the_user_no_longer_holds_it() {
        let role_id = Uuid::from_u128(7);
        let membership = reduce(&UserEvent::RoleUnassigned { role_id }, &at());
        assert_eq!(
            membership,
            Some(Membership::Unassigned {
                user_id: at().aggregate_id,
                role_id
            })
        );
    }

    #[test]
    fn given_a_user_when_anything_else_happens_then_the_roles_stay() {
        for event in [UserEvent::Deactivated, UserEvent::Unlocked] {
            assert_eq!(reduce(&event, &at()), None, "{}", event.contract_type());
        }
    }
}
