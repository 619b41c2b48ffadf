//! The events the signer folds, read with what their hash covers and the
//! stored hash of the event before each in its stream, and the checks the
//! signer makes on each before it folds it: nothing is taken on trust from
//! a table but what an earlier signed checkpoint covers.

use infra::event_log::LogPosition;
use infra::integrity::HashedEvent;
use serde::Serialize;
use sqlx::PgExecutor;

/// One event as stored, with the stored hash of its stream's previous event.
#[derive(Debug, sqlx::FromRow)]
pub struct FoldedEvent {
    pub transaction_id: i64,
    pub global_position: i64,
    #[sqlx(flatten)]
    pub event: HashedEvent,
    /// `None` when the stream has no event at `sequence - 1`.
    pub previous_hash: Option<String>,
}

/// Why the signer signs nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// An event's stored hash is not the hash of its stored fields.
    HashMismatch,
    /// An event does not follow the previous event of its stream.
    BrokenLink,
    /// A checkpoint in the database disagrees with the recomputed fold.
    CheckpointMismatch,
    /// A checkpoint names a position that has no event.
    CheckpointEventMissing,
    /// A checkpoint's signature does not verify.
    BadSignature,
    /// The log does not extend the checkpoint this signer last signed
    /// (checkpoints deleted, history cut, an older backup restored).
    StateNotExtended,
    /// The state file cannot be read.
    StateUnreadable,
}

/// What the signer found, for its log, metric and health body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub sequence: Option<i64>,
    pub global_position: Option<i64>,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: RefusalReason, global_position: Option<i64>, detail: String) -> Self {
        Self {
            reason,
            aggregate_type: None,
            aggregate_id: None,
            sequence: None,
            global_position,
            detail,
        }
    }
}

impl FoldedEvent {
    pub fn position(&self) -> LogPosition {
        LogPosition {
            transaction_id: self.transaction_id,
            global_position: self.global_position,
        }
    }

    /// Its hash recomputed from its stored fields, and its link to the
    /// stored hash of the event before it in its stream.
    pub fn check(&self) -> Result<(), Refusal> {
        self.event
            .check_hash()
            .map_err(|defect| self.refusal(RefusalReason::HashMismatch, defect.to_string()))?;
        let previous = match (self.event.sequence, &self.previous_hash) {
            (sequence, Some(hash)) if sequence > 1 => Some((sequence - 1, hash.as_str())),
            _ => None,
        };
        if !self.event.follows(previous) {
            return Err(self.refusal(
                RefusalReason::BrokenLink,
                format!(
                    "prev_hash {:?} is not the hash of event {} of its stream",
                    self.event.prev_hash,
                    self.event.sequence - 1
                ),
            ));
        }
        Ok(())
    }

    fn refusal(&self, reason: RefusalReason, detail: String) -> Refusal {
        Refusal {
            reason,
            aggregate_type: Some(self.event.aggregate_type.clone()),
            aggregate_id: Some(self.event.aggregate_id.clone()),
            sequence: Some(self.event.sequence),
            global_position: Some(self.global_position),
            detail,
        }
    }
}

/// Up to `limit` events after `after`, up to and including `up_to`, in
/// publishing order.
pub async fn events_between(
    db: impl PgExecutor<'_>,
    after: LogPosition,
    up_to: LogPosition,
    limit: i64,
) -> sqlx::Result<Vec<FoldedEvent>> {
    sqlx::query_as(
        "SELECT e.transaction_id::text::bigint AS transaction_id, e.global_position, \
                e.event_id::text AS event_id, e.hash_version, e.aggregate_type, e.aggregate_id, \
                e.sequence, e.event_type, e.event_version, e.sealed::text AS sealed, \
                e.recorded_at, e.prev_hash, e.hash, p.hash AS previous_hash \
         FROM events e LEFT JOIN events p \
           ON p.aggregate_type = e.aggregate_type AND p.aggregate_id = e.aggregate_id \
          AND p.sequence = e.sequence - 1 \
         WHERE (e.transaction_id, e.global_position) > ($1::text::xid8, $2) \
           AND (e.transaction_id, e.global_position) <= ($3::text::xid8, $4) \
         ORDER BY e.transaction_id, e.global_position LIMIT $5",
    )
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(up_to.transaction_id)
    .bind(up_to.global_position)
    .bind(limit)
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn event(sequence: i64, prev_hash: &str, previous_hash: Option<&str>) -> FoldedEvent {
        let mut event = HashedEvent {
            hash_version: 2,
            event_id: "0190a0a0-0000-7000-8000-000000000001".to_owned(),
            aggregate_type: "user".to_owned(),
            aggregate_id: "u1".to_owned(),
            sequence,
            event_type: "example.happened".to_owned(),
            event_version: "1".to_owned(),
            sealed: r#"{"payload": {}, "metadata": {}}"#.to_owned(),
            recorded_at: Utc.timestamp_micros(1_764_000_000_000_000).unwrap(),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        event.hash = event.recompute().unwrap();
        FoldedEvent {
            transaction_id: 5,
            global_position: 9,
            event,
            previous_hash: previous_hash.map(str::to_owned),
        }
    }

    #[test]
    fn an_intact_event_passes() {
        assert_eq!(event(1, "", None).check(), Ok(()));
        assert_eq!(event(2, "aa", Some("aa")).check(), Ok(()));
    }

    #[test]
    fn an_event_whose_fields_do_not_hash_to_its_hash_is_refused() {
        let mut altered = event(1, "", None);
        altered.event.sealed = r#"{"payload": {"x": 1}, "metadata": {}}"#.to_owned();
        assert_eq!(
            altered.check().unwrap_err().reason,
            RefusalReason::HashMismatch
        );
        let mut id_changed = event(1, "", None);
        id_changed.event.event_id = "0190a0a0-0000-7000-8000-000000000002".to_owned();
        assert_eq!(
            id_changed.check().unwrap_err().reason,
            RefusalReason::HashMismatch
        );
    }

    #[test]
    fn an_event_that_does_not_follow_its_stream_is_refused() {
        for broken in [
            event(2, "aa", None),
            event(2, "aa", Some("bb")),
            event(1, "aa", None),
            event(0, "", None),
        ] {
            assert_eq!(
                broken.check().unwrap_err().reason,
                RefusalReason::BrokenLink,
                "{broken:?}"
            );
        }
    }
}
