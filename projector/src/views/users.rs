//! `users_view`: one row per user, copied from the values the events carry,
//! with `user_roles_view` following the same events. No password hash is
//! ever stored. `user.erased` replaces the person's values by the marker
//! and, in `sessions_view`, their sessions' client addresses and agents.

use chrono::{DateTime, Utc};
use domain::{UserEvent, UserStatus, ERASED};
use uuid::Uuid;

use super::user_roles::{self, Membership};
use super::{
    Change, Column, EventContext, Projection, ReduceError, Value, View, ViewChange, ViewRow,
};

/// A row of `users_view`.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    /// The address lowercased, for lookups.
    pub email_key: String,
    pub display_name: String,
    pub status: String,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
    pub sequence: i64,
    pub global_position: i64,
}

impl ViewRow for UserRow {
    const VIEW: View = View::Users;

    fn key(&self) -> Uuid {
        self.id
    }

    fn sequence(&self) -> i64 {
        self.sequence
    }

    fn columns(&self) -> Vec<Column<'_>> {
        vec![
            Column::new("id", Value::Uuid(self.id)),
            Column::new("email", Value::Text(&self.email)),
            Column::new("email_key", Value::Text(&self.email_key)),
            Column::new("display_name", Value::Text(&self.display_name)),
            Column::new("status", Value::Text(&self.status)),
            Column::new("registered_at", Value::Time(self.registered_at)),
            Column::new("updated_at", Value::Time(self.updated_at)),
            Column::new("locked_until", Value::OptionalTime(self.locked_until)),
            Column::new("sequence", Value::BigInt(self.sequence)),
            Column::new("global_position", Value::BigInt(self.global_position)),
        ]
    }
}

/// What a user event does: the user's row, and maybe the user's roles.
#[derive(Clone, Debug, PartialEq)]
pub struct UserChange {
    pub user: Change<UserRow>,
    pub membership: Option<Membership>,
    /// The user whose sessions' personal values must be erased.
    pub erased_sessions: Option<Uuid>,
}

impl ViewChange for UserChange {
    type Row = UserRow;

    fn row(&self) -> &Change<UserRow> {
        &self.user
    }

    fn into_row(self) -> UserRow {
        self.user.into_row()
    }

    fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }

    fn erased_sessions(&self) -> Option<Uuid> {
        self.erased_sessions
    }
}

/// `users_view` with `user_roles_view`, from user events.
pub struct UsersView;

impl Projection for UsersView {
    type Event = UserEvent;
    type Row = UserRow;
    type Change = UserChange;

    fn reduce(
        current: Option<&UserRow>,
        event: &UserEvent,
        at: &EventContext,
    ) -> Result<UserChange, ReduceError> {
        reduce(current, event, at)
    }
}

/// What `event` does to the user's row (`None` before registration).
pub fn reduce(
    current: Option<&UserRow>,
    event: &UserEvent,
    at: &EventContext,
) -> Result<UserChange, ReduceError> {
    let user = match current {
        None => Change::Insert(registered(event, at)?),
        Some(row) => Change::Update(followed(row, event, at)?),
    };
    let erased_sessions = matches!(event, UserEvent::Erased { .. }).then_some(at.aggregate_id);
    Ok(UserChange {
        user,
        membership: user_roles::reduce(event, at),
        erased_sessions,
    })
}

fn registered(event: &UserEvent, at: &EventContext) -> Result<UserRow, ReduceError> {
    let UserEvent::Registered {
        email,
        display_name,
        ..
    } = event
    else {
        return Err(ReduceError::NotStarted {
            event: event.contract_type(),
        });
    };
    Ok(UserRow {
        id: at.aggregate_id,
        email: email.as_str().to_owned(),
        email_key: email.uniqueness_key(),
        display_name: display_name.as_str().to_owned(),
        status: UserStatus::Active.as_str().to_owned(),
        registered_at: at.occurred_at,
        updated_at: at.occurred_at,
        locked_until: None,
        sequence: at.sequence,
        global_position: at.global_position,
    })
}

/// Every later event advances the row and sets `updated_at`, even one that
/// changes nothing else the view shows.
fn followed(row: &UserRow, event: &UserEvent, at: &EventContext) -> Result<UserRow, ReduceError> {
    let mut next = UserRow {
        updated_at: at.occurred_at,
        sequence: at.sequence,
        global_position: at.global_position,
        ..row.clone()
    };
    match event {
        UserEvent::Registered { .. } => {
            return Err(ReduceError::AlreadyStarted {
                event: event.contract_type(),
            })
        }
        UserEvent::EmailChanged { email, .. } => {
            next.email = email.as_str().to_owned();
            next.email_key = email.uniqueness_key();
        }
        UserEvent::DisplayNameChanged { display_name } => {
            next.display_name = display_name.as_str().to_owned();
        }
        UserEvent::Deactivated => next.status = UserStatus::Deactivated.as_str().to_owned(),
        UserEvent::Reactivated => next.status = UserStatus::Active.as_str().to_owned(),
        UserEvent::Locked { until, .. } => next.locked_until = Some(*until),
        UserEvent::Unlocked => next.locked_until = None,
        UserEvent::Erased { .. } => forget(&mut next),
        UserEvent::PasswordChanged { .. }
        | UserEvent::PasswordRehashed { .. }
        | UserEvent::RoleAssigned { .. }
        | UserEvent::RoleUnassigned { .. }
        | UserEvent::LoginFailed { .. } => {}
    }
    Ok(next)
}

/// The row of an erased person: markers for their values, and no lookup
/// key, so that their mailbox finds no one.
fn forget(row: &mut UserRow) {
    row.email = ERASED.to_owned();
    row.email_key = String::new();
    row.display_name = ERASED.to_owned();
    row.status = UserStatus::Erased.as_str().to_owned();
    row.locked_until = None;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{TimeDelta, TimeZone};
    use domain::{DisplayName, Email, PasswordHash};

    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$secret";

    fn registered_at() -> EventContext {
        EventContext {
            aggregate_id: Uuid::from_u128(0xada),
            sequence: 1,
            global_position: 10,
            occurred_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        }
    }

    /// The context of the event after the registration.
    fn next_at() -> EventContext {
        EventContext {
            sequence: 2,
            global_position: 17,
            occurred_at: registered_at().occurred_at + TimeDelta::minutes(3),
            ..registered_at()
        }
    }

    fn email(address: &str) -> Email {
        Email::parse(address).unwrap()
    }

    fn registration() -> UserEvent {
        UserEvent::Registered {
            user_id: registered_at().aggregate_id,
            email: email("Ada@example.com"),
            display_name: DisplayName::parse("Ada").unwrap(),
            password_hash: PasswordHash::new(HASH.into()),
        }
    }

    /// The row right after the registration.
    fn registered_row() -> UserRow {
        UserRow {
            id: registered_at().aggregate_id,
            email: "Ada@example.com".into(),
            email_key: "ada@example.com".into(),
            display_name: "Ada".into(),
            status: "active".into(),
            registered_at: registered_at().occurred_at,
            updated_at: registered_at().occurred_at,
            locked_until: None,
            sequence: 1,
            global_position: 10,
        }
    }

    /// The registered row advanced to `next_at`, `change`d.
    fn advanced(change: impl FnOnce(&mut UserRow)) -> UserRow {
        let mut row = UserRow {
            updated_at: next_at().occurred_at,
            sequence: 2,
            global_position: 17,
            ..registered_row()
        };
        change(&mut row);
        row
    }

    /// Given a registered user, when `event` is applied.
    fn when_registered_user(event: &UserEvent) -> UserChange {
        reduce(Some(&registered_row()), event, &next_at()).unwrap()
    }

    /// Then the row is `row` and the roles stay as they were.
    fn update_only(row: UserRow) -> UserChange {
        UserChange {
            user: Change::Update(row),
            membership: None,
            erased_sessions: None,
        }
    }

    fn lock_until() -> DateTime<Utc> {
        next_at().occurred_at + TimeDelta::minutes(15)
    }

    /// One event of each type, with a registered user before it.
    fn one_of_each_after_registration() -> Vec<UserEvent> {
        vec![
            UserEvent::EmailChanged {
                email: email("Ada.L@example.org"),
                previous_email: email("Ada@example.com"),
            },
            UserEvent::DisplayNameChanged {
                display_name: DisplayName::parse("Ada L.").unwrap(),
            },
            UserEvent::PasswordChanged {
                password_hash: PasswordHash::new(HASH.into()),
            },
            UserEvent::Deactivated,
            UserEvent::Reactivated,
            UserEvent::RoleAssigned {
                role_id: Uuid::from_u128(7),
            },
            UserEvent::RoleUnassigned {
                role_id: Uuid::from_u128(7),
            },
            UserEvent::LoginFailed {
                ip: Some("192.0.2.1".into()),
                failed_at: next_at().occurred_at,
            },
            UserEvent::Locked {
                until: lock_until(),
                failures: 5,
            },
            UserEvent::Unlocked,
            UserEvent::PasswordRehashed {
                password_hash: PasswordHash::new(HASH.into()),
            },
            erased(),
        ]
    }

    fn erased() -> UserEvent {
        UserEvent::Erased {
            erased_at: next_at().occurred_at,
        }
    }

    #[test]
    fn given_a_locked_user_when_erased_then_the_row_keeps_no_personal_value_and_the_sessions_follow(
    ) {
        let locked = UserRow {
            locked_until: Some(lock_until()),
            ..registered_row()
        };
        let change = reduce(Some(&locked), &erased(), &next_at()).unwrap();
        assert_eq!(
            change,
            UserChange {
                erased_sessions: Some(registered_at().aggregate_id),
                ..update_only(advanced(|row| {
                    row.email = ERASED.into();
                    row.email_key = String::new();
                    row.display_name = ERASED.into();
                    row.status = "erased".into();
                }))
            }
        );
    }

    #[test]
    fn no_other_event_touches_the_sessions() {
        for event in std::iter::once(registration()).chain(one_of_each_after_registration()) {
            let current = (event != registration()).then(registered_row);
            let at = if current.is_some() {
                next_at()
            } else {
                registered_at()
            };
            let change = reduce(current.as_ref(), &event, &at).unwrap();
            let erases = matches!(event, UserEvent::Erased { .. });
            assert_eq!(
                change.erased_sessions.is_some(),
                erases,
                "{}",
                event.contract_type()
            );
        }
    }

    #[test]
    fn the_samples_cover_every_user_event_type() {
        let sampled: BTreeSet<_> = std::iter::once(registration())
            .chain(one_of_each_after_registration())
            .map(|event| event.contract_type())
            .collect();
        let all: BTreeSet<_> = UserEvent::EVENT_TYPES.iter().copied().collect();
        assert_eq!(sampled, all);
    }

    #[test]
    fn given_no_user_when_registered_then_a_row_is_inserted_active_and_unlocked() {
        let change = reduce(None, &registration(), &registered_at()).unwrap();
        assert_eq!(
            change,
            UserChange {
                user: Change::Insert(registered_row()),
                membership: None,
                erased_sessions: None,
            }
        );
    }

    #[test]
    fn given_a_user_when_the_email_changes_then_the_address_and_its_key_change() {
        let event = &one_of_each_after_registration()[0];
        assert_eq!(
            when_registered_user(event),
            update_only(advanced(|row| {
                row.email = "Ada.L@example.org".into();
                row.email_key = "ada.l@example.org".into();
            }))
        );
    }

    #[test]
    fn given_a_user_when_the_display_name_changes_then_the_name_changes() {
        let event = UserEvent::DisplayNameChanged {
            display_name: DisplayName::parse("Ada L.").unwrap(),
        };
        assert_eq!(
            when_registered_user(&event),
            update_only(advanced(|row| row.display_name = "Ada L.".into()))
        );
    }

    #[test]
    fn given_a_user_when_deactivated_then_the_status_is_deactivated() {
        assert_eq!(
            when_registered_user(&UserEvent::Deactivated),
            update_only(advanced(|row| row.status = "deactivated".into()))
        );
    }

    #[test]
    fn given_a_deactivated_user_when_reactivated_then_the_status_is_active() {
        let deactivated = UserRow {
            status: "deactivated".into(),
            ..registered_row()
        };
        let change = reduce(Some(&deactivated), &UserEvent::Reactivated, &next_at()).unwrap();
        assert_eq!(change, update_only(advanced(|_| {})));
    }

    #[test]
    fn given_a_user_when_locked_then_the_lock_end_is_shown() {
        let event = UserEvent::Locked {
            until: lock_until(),
            failures: 5,
        };
        assert_eq!(
            when_registered_user(&event),
            update_only(advanced(|row| row.locked_until = Some(lock_until())))
        );
    }

    #[test]
    fn given_a_locked_user_when_unlocked_then_no_lock_is_shown() {
        let locked = UserRow {
            locked_until: Some(lock_until()),
            ..registered_row()
        };
        let change = reduce(Some(&locked), &UserEvent::Unlocked, &next_at()).unwrap();
        assert_eq!(change, update_only(advanced(|_| {})));
    }

    #[test]
    fn given_a_user_when_a_role_is_assigned_then_the_row_advances_and_the_user_holds_it() {
        let role_id = Uuid::from_u128(7);
        let change = when_registered_user(&UserEvent::RoleAssigned { role_id });
        assert_eq!(change.user, Change::Update(advanced(|_| {})));
        assert!(matches!(
            change.membership,
            Some(Membership::Assigned(ref row)) if row.role_id == role_id
        ));
    }

    #[test]
    fn given_a_user_when_a_role_is_unassigned_then_the_row_advances_and_the_user_loses_it() {
        let role_id = Uuid::from_u128(7);
        let change = when_registered_user(&UserEvent::RoleUnassigned { role_id });
        assert_eq!(change.user, Change::Update(advanced(|_| {})));
        assert_eq!(
            change.membership,
            Some(Membership::Unassigned {
                user_id: registered_at().aggregate_id,
                role_id
            })
        );
    }

    /// Events the view does not show still advance the row and `updated_at`.
    #[test]
    fn given_a_user_when_an_event_the_view_does_not_show_happens_then_only_the_row_advances() {
        let unseen = [
            UserEvent::PasswordChanged {
                password_hash: PasswordHash::new(HASH.into()),
            },
            UserEvent::PasswordRehashed {
                password_hash: PasswordHash::new(HASH.into()),
            },
            UserEvent::LoginFailed {
                ip: Some("192.0.2.1".into()),
                failed_at: next_at().occurred_at,
            },
        ];
        for event in unseen {
            assert_eq!(
                when_registered_user(&event),
                update_only(advanced(|_| {})),
                "{}",
                event.contract_type()
            );
        }
    }

    #[test]
    fn no_event_puts_a_password_hash_in_the_row() {
        let mut row = registered_row();
        for event in one_of_each_after_registration() {
            row = reduce(Some(&row), &event, &next_at()).unwrap().into_row();
            let columns = format!("{:?}", row.columns());
            assert!(!columns.contains(HASH), "{}", event.contract_type());
        }
    }

    #[test]
    fn given_no_user_when_anything_but_a_registration_happens_then_it_is_refused() {
        for event in one_of_each_after_registration() {
            assert_eq!(
                reduce(None, &event, &registered_at()),
                Err(ReduceError::NotStarted {
                    event: event.contract_type()
                })
            );
        }
    }

    #[test]
    fn given_a_user_when_registered_again_then_it_is_refused() {
        assert_eq!(
            reduce(Some(&registered_row()), &registration(), &next_at()),
            Err(ReduceError::AlreadyStarted {
                event: UserEvent::REGISTERED
            })
        );
    }

    #[test]
    fn the_columns_name_every_field_once_with_the_key_first() {
        let row = registered_row();
        let names: Vec<&str> = row.columns().iter().map(|column| column.name).collect();
        assert_eq!(names[0], View::Users.key_column());
        assert_eq!(names.len(), names.iter().collect::<BTreeSet<_>>().len());
        assert_eq!(names.len(), 10);
    }
}
