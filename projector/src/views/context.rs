//! An event's place in its stream and in the log, as reducers see it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What a reducer knows of an event besides its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventContext {
    /// The id of the aggregate whose stream holds the event.
    pub aggregate_id: Uuid,
    pub sequence: i64,
    pub global_position: i64,
    /// When the command ran (its metadata's time, else when it was recorded).
    pub occurred_at: DateTime<Utc>,
}
