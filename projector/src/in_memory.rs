//! The views folded in memory, as a rebuild replays the log: the same pure
//! reducers and the same rules as the live writer (an event applies only
//! right after the row's sequence; a membership is added unless held; the
//! row of an erased person keeps nothing of theirs), without a round trip
//! per event. The caller fills gaps from the event store, as `apply` does.

use std::collections::{HashMap, HashSet};

use bus::Envelope;
use uuid::Uuid;

use crate::apply::{reduce_next, ApplyError};
use crate::views::roles::{RoleRow, RolesView};
use crate::views::sessions::{SessionRow, SessionsView};
use crate::views::user_roles::{Membership, UserRoleRow};
use crate::views::users::{UserRow, UsersView};
use crate::views::{Projection, View, ViewChange, ViewRow};

/// Every view's rows, by aggregate id (memberships by user and role).
#[derive(Debug, Default)]
pub struct InMemory {
    users: HashMap<Uuid, UserRow>,
    memberships: HashMap<(Uuid, Uuid), UserRoleRow>,
    roles: HashMap<Uuid, RoleRow>,
    sessions: HashMap<Uuid, SessionRow>,
    /// The people erased when the fold started.
    erased: HashSet<Uuid>,
    /// Every membership change, in the order of the events.
    membership_changes: Vec<Membership>,
    /// The users erased by the events folded, in their order.
    erasures: Vec<Uuid>,
}

/// A view's row type, held in one of the maps.
pub trait Held: ViewRow {
    fn rows(views: &InMemory) -> &HashMap<Uuid, Self>;
    fn rows_mut(views: &mut InMemory) -> &mut HashMap<Uuid, Self>;
}

macro_rules! held {
    ($row:ty, $field:ident) => {
        impl Held for $row {
            fn rows(views: &InMemory) -> &HashMap<Uuid, Self> {
                &views.$field
            }
            fn rows_mut(views: &mut InMemory) -> &mut HashMap<Uuid, Self> {
                &mut views.$field
            }
        }
    };
}
held!(UserRow, users);
held!(RoleRow, roles);
held!(SessionRow, sessions);

impl InMemory {
    /// Empty views; rows of the people in `erased` are written erased.
    pub fn new(erased: HashSet<Uuid>) -> Self {
        Self {
            erased,
            ..Self::default()
        }
    }

    /// The sequence of the last event applied to aggregate `id` of `view`,
    /// 0 before its first.
    pub fn last(&self, view: View, id: Uuid) -> i64 {
        let sequence = match view {
            View::Users => self.users.get(&id).map(ViewRow::sequence),
            View::Roles => self.roles.get(&id).map(ViewRow::sequence),
            View::Sessions => self.sessions.get(&id).map(ViewRow::sequence),
        };
        sequence.unwrap_or(0)
    }

    /// Applies `envelope`, the event right after [`InMemory::last`].
    pub fn apply_next(
        &mut self,
        view: View,
        id: Uuid,
        envelope: &Envelope,
    ) -> Result<(), ApplyError> {
        match view {
            View::Users => self.step::<UsersView>(id, envelope),
            View::Roles => self.step::<RolesView>(id, envelope),
            View::Sessions => self.step::<SessionsView>(id, envelope),
        }
    }

    fn step<P: Projection>(&mut self, id: Uuid, envelope: &Envelope) -> Result<(), ApplyError>
    where
        P::Row: Held,
    {
        let change = reduce_next::<P>(self.rows::<P::Row>().get(&id), id, envelope)?;
        if let Some(membership) = change.membership() {
            self.change_membership(membership);
        }
        self.erasures.extend(change.erased_sessions());
        let row = change.into_row();
        let row = match row.person() {
            Some(person) if self.erased.contains(&person) => row.erased(),
            _ => row,
        };
        P::Row::rows_mut(self).insert(id, row);
        Ok(())
    }

    fn change_membership(&mut self, membership: &Membership) {
        match membership {
            Membership::Assigned(row) => {
                self.memberships
                    .entry((row.user_id, row.role_id))
                    .or_insert_with(|| row.clone());
            }
            Membership::Unassigned { user_id, role_id } => {
                self.memberships.remove(&(*user_id, *role_id));
            }
        }
        self.membership_changes.push(membership.clone());
    }

    /// Starts from `rows`, as they are in a table.
    pub fn hold<R: Held>(&mut self, rows: impl IntoIterator<Item = R>) {
        R::rows_mut(self).extend(rows.into_iter().map(|row| (row.key(), row)));
    }

    /// A view's rows, by aggregate id.
    pub fn rows<R: Held>(&self) -> &HashMap<Uuid, R> {
        R::rows(self)
    }

    /// The rows of the people in `erased` keep nothing of them.
    pub fn erase<R: Held>(&mut self, erased: &HashSet<Uuid>) {
        for row in R::rows_mut(self).values_mut() {
            if row.person().is_some_and(|person| erased.contains(&person)) {
                *row = row.clone().erased();
            }
        }
    }

    /// Every membership change folded, in order.
    pub fn membership_changes(&self) -> &[Membership] {
        &self.membership_changes
    }

    /// The users the events folded erased.
    pub fn erasures(&self) -> &[Uuid] {
        &self.erasures
    }

    pub fn users(&self) -> impl Iterator<Item = &UserRow> {
        self.users.values()
    }

    pub fn memberships(&self) -> impl Iterator<Item = &UserRoleRow> {
        self.memberships.values()
    }

    pub fn roles(&self) -> impl Iterator<Item = &RoleRow> {
        self.roles.values()
    }

    pub fn sessions(&self) -> impl Iterator<Item = &SessionRow> {
        self.sessions.values()
    }
}

#[cfg(test)]
mod tests {
    use bus::EventMetadata;
    use chrono::{TimeZone, Utc};
    use domain::{
        ContractEvent, DisplayName, Email, EventType, PasswordHash, RefreshTokenHash, SessionEvent,
        UserEvent, ERASED,
    };

    use super::*;

    const USER: Uuid = Uuid::from_u128(0xada);
    const SESSION: Uuid = Uuid::from_u128(0x5e55);
    const ROLE: Uuid = Uuid::from_u128(7);

    fn envelope<E: ContractEvent + serde::Serialize>(
        id: Uuid,
        sequence: i64,
        event_type: EventType,
        event: &E,
    ) -> Envelope {
        Envelope {
            event_id: Uuid::from_u128(sequence as u128),
            global_position: sequence,
            transaction_id: sequence,
            aggregate_type: E::AGGREGATE_TYPE.into(),
            aggregate_id: id.to_string(),
            sequence,
            event_type: event_type.name().into(),
            event_version: event_type.version().into(),
            payload: serde_json::to_value(event).unwrap(),
            metadata: EventMetadata::default(),
            recorded_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        }
    }

    fn user_event(sequence: i64, event: UserEvent) -> Envelope {
        envelope(USER, sequence, event.contract_type(), &event)
    }

    fn registration() -> UserEvent {
        UserEvent::Registered {
            user_id: USER,
            email: Email::parse("ada@example.com").unwrap(),
            display_name: DisplayName::parse("Ada").unwrap(),
            password_hash: PasswordHash::new("$argon2id$x".into()),
        }
    }

    fn session_start() -> Envelope {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let event = SessionEvent::Started {
            second_factor_used: false,
            session_id: SESSION,
            user_id: USER,
            refresh_token_hash: RefreshTokenHash::new("f00d".into()),
            started_at: at,
            expires_at: at,
            idle_timeout_seconds: 60,
            ip: Some("192.0.2.1".into()),
            user_agent: None,
        };
        envelope(SESSION, 1, event.contract_type(), &event)
    }

    #[test]
    fn events_advance_the_row_and_a_role_is_held_until_unassigned() {
        let mut views = InMemory::default();
        assert_eq!(views.last(View::Users, USER), 0);
        let events = [
            user_event(1, registration()),
            user_event(2, UserEvent::RoleAssigned { role_id: ROLE }),
            user_event(3, UserEvent::Deactivated),
        ];
        for event in &events {
            views.apply_next(View::Users, USER, event).unwrap();
        }
        assert_eq!(views.last(View::Users, USER), 3);
        let user = views.users().next().unwrap();
        assert_eq!((user.status.as_str(), user.sequence), ("deactivated", 3));
        let held: Vec<Uuid> = views.memberships().map(|row| row.role_id).collect();
        assert_eq!(held, [ROLE]);

        let unassigned = user_event(4, UserEvent::RoleUnassigned { role_id: ROLE });
        views.apply_next(View::Users, USER, &unassigned).unwrap();
        assert_eq!(views.memberships().count(), 0);
    }

    #[test]
    fn a_role_assigned_again_keeps_the_assignment_in_force() {
        let mut views = InMemory::default();
        for (sequence, event) in [
            (1, registration()),
            (2, UserEvent::RoleAssigned { role_id: ROLE }),
            (3, UserEvent::RoleAssigned { role_id: ROLE }),
        ] {
            views
                .apply_next(View::Users, USER, &user_event(sequence, event))
                .unwrap();
        }
        let held: Vec<i64> = views.memberships().map(|row| row.global_position).collect();
        assert_eq!(held, [2]);
    }

    #[test]
    fn a_session_of_an_erased_person_keeps_neither_address_nor_agent() {
        let mut views = InMemory::new(HashSet::from([USER]));
        views
            .apply_next(View::Sessions, SESSION, &session_start())
            .unwrap();
        let session = views.sessions().next().unwrap();
        assert_eq!(session.ip.as_deref(), Some(ERASED));
        assert_eq!(session.user_agent, None);

        let mut views = InMemory::default();
        views
            .apply_next(View::Sessions, SESSION, &session_start())
            .unwrap();
        let session = views.sessions().next().unwrap();
        assert_eq!(session.ip.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn an_event_that_cannot_follow_the_row_is_refused() {
        let mut views = InMemory::default();
        let error = views
            .apply_next(View::Users, USER, &user_event(1, UserEvent::Deactivated))
            .unwrap_err();
        assert!(matches!(error, ApplyError::Inapplicable { .. }), "{error}");
        assert_eq!(views.last(View::Users, USER), 0);
    }
}
