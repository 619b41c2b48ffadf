//! The read models as pure functions of the events. The views
//! (`users_view` with `user_roles_view`, `roles_view`, `sessions_view`) are
//! folds: which aggregate type feeds each, its tables, and how one event
//! changes its rows. The `audit_log` is a row per event of every type. No
//! I/O here; the executor writes what these functions decide.

pub mod audit_log;
mod context;
mod fold;
pub mod roles;
mod row;
pub mod sessions;
pub mod user_roles;
pub mod users;

use domain::{ContractEvent, EventType, RoleEvent, SessionEvent, UserEvent};

pub use audit_log::{AuditLogRow, AUDIT_LOG};
pub use context::EventContext;
pub use fold::{Change, Projection, ReduceError, ViewChange};
pub use row::{Column, Value, ViewRow};

/// One row per user.
pub const USERS_VIEW: &str = "users_view";
/// One row per role a user holds; guarded by the user's row in `users_view`.
pub const USER_ROLES_VIEW: &str = "user_roles_view";
/// One row per role ever created, deleted ones included.
pub const ROLES_VIEW: &str = "roles_view";
/// One row per session.
pub const SESSIONS_VIEW: &str = "sessions_view";

/// A read model fed by the events of one aggregate type. Its first table
/// has a row per aggregate holding the sequence of the last event applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum View {
    /// `users_view` and `user_roles_view`, both from user events.
    Users,
    Roles,
    Sessions,
}

/// Which copy of a read model's tables to write: the live ones, or the ones
/// a rebuild fills before swapping them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Live,
    Rebuild,
}

impl Target {
    /// The name of `live_table`'s copy.
    pub fn table(self, live_table: &str) -> String {
        match self {
            Self::Live => live_table.to_owned(),
            Self::Rebuild => format!("{live_table}_next"),
        }
    }
}

impl View {
    pub const ALL: [View; 3] = [Self::Users, Self::Roles, Self::Sessions];

    pub fn name(self) -> &'static str {
        self.tables()[0]
    }

    /// A view by the name of any of its tables.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|view| view.tables().contains(&name))
    }

    pub fn aggregate_type(self) -> &'static str {
        match self {
            Self::Users => UserEvent::AGGREGATE_TYPE,
            Self::Roles => RoleEvent::AGGREGATE_TYPE,
            Self::Sessions => SessionEvent::AGGREGATE_TYPE,
        }
    }

    /// The event types that feed the view: every type of its aggregate.
    pub fn event_types(self) -> &'static [EventType] {
        match self {
            Self::Users => UserEvent::EVENT_TYPES,
            Self::Roles => RoleEvent::EVENT_TYPES,
            Self::Sessions => SessionEvent::EVENT_TYPES,
        }
    }

    /// The view an aggregate type's events go to, if any.
    pub fn of_aggregate(aggregate_type: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|view| view.aggregate_type() == aggregate_type)
    }

    /// The live tables; the first holds each aggregate's sequence.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Self::Users => &[USERS_VIEW, USER_ROLES_VIEW],
            Self::Roles => &[ROLES_VIEW],
            Self::Sessions => &[SESSIONS_VIEW],
        }
    }

    /// The key column of the first table: the aggregate's id.
    pub fn key_column(self) -> &'static str {
        match self {
            Self::Users => "id",
            Self::Roles => "role_id",
            Self::Sessions => "session_id",
        }
    }
}

/// A read model a rebuild replays: a view, or the audit log, which the
/// events of every aggregate type feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadModel {
    View(View),
    AuditLog,
}

impl ReadModel {
    /// Every read model: the views, then the audit log.
    pub fn all() -> impl Iterator<Item = ReadModel> {
        View::ALL
            .into_iter()
            .map(Self::View)
            .chain([Self::AuditLog])
    }

    /// The name of its first table.
    pub fn name(self) -> &'static str {
        self.tables()[0]
    }

    /// A read model by the name of any of its tables.
    pub fn parse(name: &str) -> Option<Self> {
        Self::all().find(|model| model.tables().contains(&name))
    }

    /// The live tables.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Self::View(view) => view.tables(),
            Self::AuditLog => &[AUDIT_LOG],
        }
    }

    /// Whether the events of `aggregate_type` feed it.
    pub fn is_fed_by(self, aggregate_type: &str) -> bool {
        match self {
            Self::View(view) => view.aggregate_type() == aggregate_type,
            Self::AuditLog => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use domain::all_event_types;

    use super::*;

    #[test]
    fn every_event_type_feeds_the_view_of_its_aggregate() {
        for event_type in all_event_types() {
            // Webhook events have no view: they only feed the audit log.
            if let Some(view) = View::of_aggregate(event_type.aggregate_type()) {
                assert!(view.event_types().contains(&event_type), "{event_type}");
            }
        }
    }

    #[test]
    fn a_view_is_found_by_any_of_its_tables_and_nothing_else() {
        for view in View::ALL {
            for table in view.tables() {
                assert_eq!(View::parse(table), Some(view));
            }
        }
        assert_eq!(View::parse("events"), None);
    }

    #[test]
    fn a_read_model_is_found_by_any_of_its_tables_and_nothing_else() {
        for view in View::ALL {
            for table in view.tables() {
                assert_eq!(ReadModel::parse(table), Some(ReadModel::View(view)));
            }
        }
        assert_eq!(ReadModel::parse(AUDIT_LOG), Some(ReadModel::AuditLog));
        assert_eq!(ReadModel::parse("events"), None);
    }

    #[test]
    fn the_audit_log_is_fed_by_every_aggregate_type_and_a_view_by_its_own() {
        for event_type in all_event_types() {
            let kind = event_type.aggregate_type();
            let fed: Vec<ReadModel> = ReadModel::all()
                .filter(|model| model.is_fed_by(kind))
                .collect();
            let expected: Vec<ReadModel> = View::of_aggregate(kind)
                .map(ReadModel::View)
                .into_iter()
                .chain([ReadModel::AuditLog])
                .collect();
            assert_eq!(fed, expected, "{kind}");
        }
    }

    #[test]
    fn a_rebuild_writes_copies_of_the_live_tables() {
        assert_eq!(Target::Live.table(ROLES_VIEW), ROLES_VIEW);
        assert_eq!(Target::Rebuild.table(ROLES_VIEW), "roles_view_next");
    }
}
