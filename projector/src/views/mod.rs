//! The read models: which aggregate type feeds each, and its tables.

use cqrs_es::Aggregate;
use domain::{Role, Session, User};

/// A read model fed by the events of one aggregate type. Its first table
/// has a row per aggregate holding the sequence of the last event applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// `users_view` and `user_roles_view`, both from user events.
    Users,
    Roles,
    Sessions,
}

/// Which copy of a view's tables to write: the live ones, or the ones a
/// rebuild fills before swapping them in.
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
            Self::Users => User::TYPE,
            Self::Roles => Role::TYPE,
            Self::Sessions => Session::TYPE,
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
            Self::Users => &["users_view", "user_roles_view"],
            Self::Roles => &["roles_view"],
            Self::Sessions => &["sessions_view"],
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
