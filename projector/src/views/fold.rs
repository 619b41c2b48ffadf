//! The shape of every view's reducer: the row as it is and one event in,
//! the change to write out.

use domain::{ContractEvent, EventType};

use super::context::EventContext;
use super::user_roles::Membership;
use super::ViewRow;

/// What one event does to its aggregate's row. Every event advances the
/// row's sequence, so no event leaves the row alone; and no view removes an
/// aggregate's row (a deleted role keeps it, so that its sequence still
/// guards against late deliveries), so no event deletes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Change<R> {
    /// The aggregate's first event: a new row.
    Insert(R),
    /// A later event: the row replaced by this one, only if it is still at
    /// the previous sequence.
    Update(R),
}

impl<R> Change<R> {
    pub fn row(&self) -> &R {
        match self {
            Self::Insert(row) | Self::Update(row) => row,
        }
    }

    /// The same change, of the row with its person's values erased.
    pub fn erased(&self) -> Change<R>
    where
        R: ViewRow,
    {
        match self {
            Self::Insert(row) => Self::Insert(row.clone().erased()),
            Self::Update(row) => Self::Update(row.clone().erased()),
        }
    }

    pub fn into_row(self) -> R {
        match self {
            Self::Insert(row) | Self::Update(row) => row,
        }
    }
}

/// Everything one event does to a view's tables.
pub trait ViewChange: Send + Sync {
    type Row: ViewRow + Sync;

    /// The change of the aggregate's row, written under the sequence guard.
    fn row(&self) -> &Change<Self::Row>;

    /// The aggregate's row after the event.
    fn into_row(self) -> Self::Row;

    /// A change of `user_roles_view`, written only once the row is.
    fn membership(&self) -> Option<&Membership> {
        None
    }

    /// A user erased: the user whose sessions' client addresses and user
    /// agents `sessions_view` must replace by the marker.
    fn erased_sessions(&self) -> Option<uuid::Uuid> {
        None
    }
}

impl<R: ViewRow + Sync> ViewChange for Change<R> {
    type Row = R;

    fn row(&self) -> &Change<R> {
        self
    }

    fn into_row(self) -> R {
        Change::into_row(self)
    }
}

/// A view as a pure fold of its aggregate's events.
pub trait Projection {
    type Event: ContractEvent + Send + Sync;
    type Row: ViewRow + Sync;
    type Change: ViewChange<Row = Self::Row>;

    /// What `event` does to the aggregate's row: `current` is the row as
    /// it is, `None` before the aggregate's first event.
    fn reduce(
        current: Option<&Self::Row>,
        event: &Self::Event,
        at: &EventContext,
    ) -> Result<Self::Change, ReduceError>;
}

/// An event that cannot follow the row it was given: the event store holds
/// a history the domain would never have written. Permanent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReduceError {
    #[error("{event} cannot start an aggregate, and the view has no row for it")]
    NotStarted { event: EventType },
    #[error("{event} starts an aggregate the view has a row for already")]
    AlreadyStarted { event: EventType },
    #[error("{event}: {field} is out of range")]
    OutOfRange {
        event: EventType,
        field: &'static str,
    },
}
