//! `roles_view`: one row per role ever created. A deleted role keeps its
//! row, marked `deleted_at`, so that its sequence still guards against late
//! and duplicate deliveries.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use domain::{Permission, RoleEvent};
use uuid::Uuid;

use super::{Change, Column, EventContext, Projection, ReduceError, Value, View, ViewRow};

/// A row of `roles_view`.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RoleRow {
    pub role_id: Uuid,
    pub name: String,
    /// The name lowercased, for lookups.
    pub name_key: String,
    pub description: String,
    /// In the permissions' order, so that equal sets are equal arrays.
    pub permissions: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub sequence: i64,
    pub global_position: i64,
}

impl ViewRow for RoleRow {
    const VIEW: View = View::Roles;

    fn key(&self) -> Uuid {
        self.role_id
    }

    fn sequence(&self) -> i64 {
        self.sequence
    }

    fn columns(&self) -> Vec<Column<'_>> {
        vec![
            Column::new("role_id", Value::Uuid(self.role_id)),
            Column::new("name", Value::Text(&self.name)),
            Column::new("name_key", Value::Text(&self.name_key)),
            Column::new("description", Value::Text(&self.description)),
            Column::new("permissions", Value::TextArray(&self.permissions)),
            Column::new("created_at", Value::Time(self.created_at)),
            Column::new("updated_at", Value::Time(self.updated_at)),
            Column::new("deleted_at", Value::OptionalTime(self.deleted_at)),
            Column::new("sequence", Value::BigInt(self.sequence)),
            Column::new("global_position", Value::BigInt(self.global_position)),
        ]
    }
}

/// `roles_view`, from role events.
pub struct RolesView;

impl Projection for RolesView {
    type Event = RoleEvent;
    type Row = RoleRow;
    type Change = Change<RoleRow>;

    fn reduce(
        current: Option<&RoleRow>,
        event: &RoleEvent,
        at: &EventContext,
    ) -> Result<Change<RoleRow>, ReduceError> {
        reduce(current, event, at)
    }
}

/// What `event` does to the role's row (`None` before its creation).
pub fn reduce(
    current: Option<&RoleRow>,
    event: &RoleEvent,
    at: &EventContext,
) -> Result<Change<RoleRow>, ReduceError> {
    match current {
        None => created(event, at).map(Change::Insert),
        Some(row) => followed(row, event, at).map(Change::Update),
    }
}

fn created(event: &RoleEvent, at: &EventContext) -> Result<RoleRow, ReduceError> {
    let RoleEvent::Created {
        name,
        description,
        permissions,
        ..
    } = event
    else {
        return Err(ReduceError::NotStarted {
            event: event.contract_type(),
        });
    };
    Ok(RoleRow {
        role_id: at.aggregate_id,
        name: name.as_str().to_owned(),
        name_key: name.uniqueness_key(),
        description: description.as_str().to_owned(),
        permissions: names(permissions),
        created_at: at.occurred_at,
        updated_at: at.occurred_at,
        deleted_at: None,
        sequence: at.sequence,
        global_position: at.global_position,
    })
}

fn followed(row: &RoleRow, event: &RoleEvent, at: &EventContext) -> Result<RoleRow, ReduceError> {
    let mut next = RoleRow {
        updated_at: at.occurred_at,
        sequence: at.sequence,
        global_position: at.global_position,
        ..row.clone()
    };
    match event {
        RoleEvent::Created { .. } => {
            return Err(ReduceError::AlreadyStarted {
                event: event.contract_type(),
            })
        }
        RoleEvent::PermissionsChanged { permissions } => next.permissions = names(permissions),
        RoleEvent::Deleted { .. } => next.deleted_at = Some(at.occurred_at),
    }
    Ok(next)
}

fn names(permissions: &BTreeSet<Permission>) -> Vec<String> {
    permissions
        .iter()
        .map(|permission| permission.as_str().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};
    use domain::{RoleDescription, RoleName};

    use super::*;

    fn created_at() -> EventContext {
        EventContext {
            aggregate_id: Uuid::from_u128(0x401e),
            sequence: 1,
            global_position: 5,
            occurred_at: Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(),
        }
    }

    fn next_at() -> EventContext {
        EventContext {
            sequence: 2,
            global_position: 9,
            occurred_at: created_at().occurred_at + TimeDelta::hours(1),
            ..created_at()
        }
    }

    fn permissions(permissions: &[Permission]) -> BTreeSet<Permission> {
        permissions.iter().copied().collect()
    }

    fn creation() -> RoleEvent {
        RoleEvent::Created {
            role_id: created_at().aggregate_id,
            name: RoleName::parse("Support").unwrap(),
            description: RoleDescription::parse("Answers the phone").unwrap(),
            permissions: permissions(&[Permission::UsersWrite, Permission::UsersRead]),
        }
    }

    fn created_row() -> RoleRow {
        RoleRow {
            role_id: created_at().aggregate_id,
            name: "Support".into(),
            name_key: "support".into(),
            description: "Answers the phone".into(),
            permissions: names(&permissions(&[
                Permission::UsersRead,
                Permission::UsersWrite,
            ])),
            created_at: created_at().occurred_at,
            updated_at: created_at().occurred_at,
            deleted_at: None,
            sequence: 1,
            global_position: 5,
        }
    }

    fn advanced(change: impl FnOnce(&mut RoleRow)) -> RoleRow {
        let mut row = RoleRow {
            updated_at: next_at().occurred_at,
            sequence: 2,
            global_position: 9,
            ..created_row()
        };
        change(&mut row);
        row
    }

    fn deletion() -> RoleEvent {
        RoleEvent::Deleted {
            name: RoleName::parse("Support").unwrap(),
        }
    }

    #[test]
    fn given_no_role_when_created_then_a_row_is_inserted_with_its_sorted_permissions() {
        let change = reduce(None, &creation(), &created_at()).unwrap();
        assert_eq!(change, Change::Insert(created_row()));
        let sorted = names(&permissions(&[
            Permission::UsersRead,
            Permission::UsersWrite,
        ]));
        assert_eq!(change.row().permissions, sorted);
    }

    #[test]
    fn given_a_role_when_its_permissions_change_then_the_row_holds_the_new_set() {
        let cases = [
            vec![Permission::AuditRead],
            vec![],
            Permission::ALL.to_vec(),
        ];
        for new in cases {
            let event = RoleEvent::PermissionsChanged {
                permissions: permissions(&new),
            };
            let change = reduce(Some(&created_row()), &event, &next_at()).unwrap();
            let expected = advanced(|row| row.permissions = names(&permissions(&new)));
            assert_eq!(change, Change::Update(expected), "{new:?}");
        }
    }

    #[test]
    fn given_a_role_when_deleted_then_the_row_stays_marked_deleted() {
        let change = reduce(Some(&created_row()), &deletion(), &next_at()).unwrap();
        let deleted = advanced(|row| row.deleted_at = Some(next_at().occurred_at));
        assert_eq!(change, Change::Update(deleted));
    }

    #[test]
    fn given_no_role_when_anything_but_a_creation_happens_then_it_is_refused() {
        let events = [
            RoleEvent::PermissionsChanged {
                permissions: permissions(&[]),
            },
            deletion(),
        ];
        for event in events {
            assert_eq!(
                reduce(None, &event, &created_at()),
                Err(ReduceError::NotStarted {
                    event: event.contract_type()
                })
            );
        }
    }

    #[test]
    fn given_a_role_when_created_again_then_it_is_refused() {
        assert_eq!(
            reduce(Some(&created_row()), &creation(), &next_at()),
            Err(ReduceError::AlreadyStarted {
                event: RoleEvent::CREATED
            })
        );
    }
}
