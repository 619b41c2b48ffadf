//! Applying one aggregate's event to its view exactly once, in sequence
//! order, whatever the broker delivers: duplicates are ignored, and an event
//! ahead of the view first has the missing ones loaded from the event store,
//! which is the truth; the broker carries news.

use bus::Envelope;
use domain::DecodeError;
use uuid::Uuid;

use crate::executor;
use crate::in_memory::InMemory;
use crate::views::roles::RolesView;
use crate::views::sessions::SessionsView;
use crate::views::users::UsersView;
use crate::views::{EventContext, Projection, ReduceError, Target, View, ViewChange, ViewRow};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the database failed")]
    Database(#[from] sqlx::Error),
    #[error("event {event_id} does not decode")]
    Decode { event_id: Uuid, source: DecodeError },
    #[error("{aggregate_type} {id:?} is not a UUID")]
    BadId {
        aggregate_type: String,
        id: String,
        source: uuid::Error,
    },
    #[error("event {event_id} cannot follow its view's row")]
    Inapplicable { event_id: Uuid, source: ReduceError },
    #[error("{aggregate_type} {id}: expected sequence {expected}, the event store has {found:?}")]
    MissingEvents {
        aggregate_type: String,
        id: Uuid,
        expected: i64,
        found: Option<i64>,
    },
    #[error("{aggregate_type} {id} changed under us; retry")]
    Raced { aggregate_type: String, id: Uuid },
    #[error(
        "{aggregate_type}: {written} of {expected} rows written, others changed under us; retry"
    )]
    RacedRows {
        aggregate_type: &'static str,
        expected: usize,
        written: u64,
    },
}

impl ApplyError {
    /// Whether retrying the same event can only fail the same way: its
    /// bytes or the history it belongs to are wrong, not the moment.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Decode { .. } | Self::BadId { .. } | Self::Inapplicable { .. } => true,
            Self::Database(_)
            | Self::MissingEvents { .. }
            | Self::Raced { .. }
            | Self::RacedRows { .. } => false,
        }
    }
}

/// Applies `envelope` to `view` unless it was applied already. Returns the
/// events before it that the view lacked, loaded from the event store and
/// applied first (their caller records them in the audit log too).
pub async fn apply(
    db: &mut sqlx::PgConnection,
    view: View,
    target: Target,
    envelope: &Envelope,
) -> Result<Vec<Envelope>, ApplyError> {
    match view {
        View::Users => apply_to::<UsersView>(db, target, envelope).await,
        View::Roles => apply_to::<RolesView>(db, target, envelope).await,
        View::Sessions => apply_to::<SessionsView>(db, target, envelope).await,
    }
}

async fn apply_to<P: Projection>(
    db: &mut sqlx::PgConnection,
    target: Target,
    envelope: &Envelope,
) -> Result<Vec<Envelope>, ApplyError> {
    let id = aggregate_id(envelope)?;
    let mut current = executor::load::<P::Row>(db, target, id).await?;
    let last = current.as_ref().map_or(0, ViewRow::sequence);
    if envelope.sequence <= last {
        return Ok(Vec::new());
    }
    let missing = if envelope.sequence > last + 1 {
        infra::event_log::read_stream(
            &mut *db,
            &envelope.aggregate_type,
            &envelope.aggregate_id,
            last,
            envelope.sequence - 1,
        )
        .await?
    } else {
        Vec::new()
    };
    for (expected, event) in (last + 1..).zip(missing.iter().chain([envelope])) {
        check_next(event, id, expected)?;
        current = Some(apply_next::<P>(db, target, id, current.as_ref(), event).await?);
    }
    Ok(missing)
}

/// [`apply`] to views held in memory: folds `envelope` into `view` unless
/// applied already, after the events before it that the view lacks, loaded
/// from the event store and returned.
pub async fn fold(
    db: &mut sqlx::PgConnection,
    views: &mut InMemory,
    view: View,
    envelope: &Envelope,
) -> Result<Vec<Envelope>, ApplyError> {
    let id = aggregate_id(envelope)?;
    let last = views.last(view, id);
    if envelope.sequence <= last {
        return Ok(Vec::new());
    }
    let missing = if envelope.sequence > last + 1 {
        infra::event_log::read_stream(
            &mut *db,
            &envelope.aggregate_type,
            &envelope.aggregate_id,
            last,
            envelope.sequence - 1,
        )
        .await?
    } else {
        Vec::new()
    };
    for (expected, event) in (last + 1..).zip(missing.iter().chain([envelope])) {
        check_next(event, id, expected)?;
        views.apply_next(view, id, event)?;
    }
    Ok(missing)
}

/// The id of the envelope's aggregate, which views key their rows by.
pub(crate) fn aggregate_id(envelope: &Envelope) -> Result<Uuid, ApplyError> {
    Uuid::parse_str(&envelope.aggregate_id).map_err(|source| ApplyError::BadId {
        aggregate_type: envelope.aggregate_type.clone(),
        id: envelope.aggregate_id.clone(),
        source,
    })
}

/// Refuses an event that is not the one at sequence `expected`.
pub(crate) fn check_next(envelope: &Envelope, id: Uuid, expected: i64) -> Result<(), ApplyError> {
    if envelope.sequence == expected {
        Ok(())
    } else {
        Err(ApplyError::MissingEvents {
            aggregate_type: envelope.aggregate_type.clone(),
            id,
            expected,
            found: Some(envelope.sequence),
        })
    }
}

/// Applies the event that directly follows `current`; returns the row
/// after it.
async fn apply_next<P: Projection>(
    db: &mut sqlx::PgConnection,
    target: Target,
    id: Uuid,
    current: Option<&P::Row>,
    envelope: &Envelope,
) -> Result<P::Row, ApplyError> {
    let change = reduce_next::<P>(current, id, envelope)?;
    if !executor::write(db, target, &change).await? {
        return Err(ApplyError::Raced {
            aggregate_type: envelope.aggregate_type.clone(),
            id,
        });
    }
    Ok(change.into_row())
}

/// What the event that directly follows `current` does to the view: the
/// same pure step for the live writer and a rebuild's fold in memory.
pub(crate) fn reduce_next<P: Projection>(
    current: Option<&P::Row>,
    id: Uuid,
    envelope: &Envelope,
) -> Result<P::Change, ApplyError> {
    let event_id = envelope.event_id;
    let event: P::Event = infra::event_log::decode(envelope)
        .map_err(|source| ApplyError::Decode { event_id, source })?;
    P::reduce(current, &event, &context(id, envelope))
        .map_err(|source| ApplyError::Inapplicable { event_id, source })
}

fn context(id: Uuid, envelope: &Envelope) -> EventContext {
    EventContext {
        aggregate_id: id,
        sequence: envelope.sequence,
        global_position: envelope.global_position,
        occurred_at: envelope
            .metadata
            .occurred_at
            .unwrap_or(envelope.recorded_at),
    }
}

#[cfg(test)]
mod tests {
    use domain::UserEvent;

    use super::*;

    fn permanence(error: ApplyError) -> (String, bool) {
        (error.to_string(), error.is_permanent())
    }

    #[test]
    fn only_a_wrong_event_or_history_is_a_permanent_failure() {
        let id = Uuid::from_u128(1);
        let cases = [
            (
                ApplyError::Decode {
                    event_id: id,
                    source: DecodeError::UnknownType("thing.exploded".into()),
                },
                true,
            ),
            (
                ApplyError::BadId {
                    aggregate_type: "user".into(),
                    id: "42".into(),
                    source: Uuid::parse_str("42").unwrap_err(),
                },
                true,
            ),
            (
                ApplyError::Inapplicable {
                    event_id: id,
                    source: ReduceError::NotStarted {
                        event: UserEvent::DEACTIVATED,
                    },
                },
                true,
            ),
            (ApplyError::Database(sqlx::Error::PoolTimedOut), false),
            (
                ApplyError::MissingEvents {
                    aggregate_type: "user".into(),
                    id,
                    expected: 2,
                    found: Some(3),
                },
                false,
            ),
            (
                ApplyError::Raced {
                    aggregate_type: "user".into(),
                    id,
                },
                false,
            ),
            (
                ApplyError::RacedRows {
                    aggregate_type: "user",
                    expected: 2,
                    written: 1,
                },
                false,
            ),
        ];
        for (error, permanent) in cases {
            let (message, is_permanent) = permanence(error);
            assert_eq!(is_permanent, permanent, "{message}");
        }
    }
}
