//! The checks every verification runs on one event, its stream link and
//! the running hash, whatever the events are read from.

use std::collections::VecDeque;

use infra::event_log::LogPosition;
use infra::integrity::{
    check_seal, running_digest, Checkpoint, HashDefect, HashedEventRef, Json, PublicKeys, Withheld,
};
use serde::{Deserialize, Serialize};

use super::report::{Broken, Reason};

/// One event with its integrity columns, as stored or as exported,
/// borrowed from where it was read.
#[derive(Debug)]
pub struct SealedRecord<'a> {
    /// What its hash covers, and the hashes stored with it.
    pub event: HashedEventRef<'a>,
    pub position: LogPosition,
    /// `{"payload": ..., "metadata": ...}` as shown (stored, or exported).
    pub visible: Json<'a>,
    pub salts: Json<'a>,
}

impl SealedRecord<'_> {
    pub(crate) fn broken(
        &self,
        reason: Reason,
        expected: Option<String>,
        found: Option<String>,
    ) -> Broken {
        Broken {
            aggregate_type: Some(self.event.aggregate_type.to_owned()),
            aggregate_id: Some(self.event.aggregate_id.to_owned()),
            sequence: Some(self.event.sequence),
            global_position: Some(self.position.global_position),
            expected,
            found,
            reason,
            detail: None,
        }
    }

    /// The event's own hash and seal; the leaves shown without their salt,
    /// for the marker rules (`super::markers`).
    pub fn check(&self) -> Result<Vec<Withheld>, Broken> {
        self.event.check_hash().map_err(|defect| match defect {
            HashDefect::Mismatch { stored, computed } => {
                self.broken(Reason::HashMismatch, Some(computed), Some(stored))
            }
            HashDefect::UnknownVersion(unknown) => Broken {
                detail: Some(unknown.to_string()),
                ..self.broken(Reason::HashMismatch, None, None)
            },
        })?;
        let sealed = Json::parse(self.event.sealed)
            .map_err(|_| self.not_json("the sealed form is not JSON"))?;
        check_seal(&self.visible, &sealed, &self.salts).map_err(|mismatch| Broken {
            detail: Some(mismatch.to_string()),
            ..self.broken(Reason::SealMismatch, None, None)
        })
    }

    /// A seal mismatch because a column that must hold JSON does not.
    pub(crate) fn not_json(&self, detail: &str) -> Broken {
        Broken {
            detail: Some(detail.to_owned()),
            ..self.broken(Reason::SealMismatch, None, None)
        }
    }

    /// That it follows `previous` (the event before it in its stream, if
    /// known) or, without one, begins its stream.
    pub fn check_link(&self, previous: Option<(i64, &str)>) -> Result<(), Broken> {
        if self.event.follows(previous) {
            return Ok(());
        }
        let (expected_sequence, expected_prev) =
            previous.map_or((1, ""), |(sequence, hash)| (sequence + 1, hash));
        Err(Broken {
            detail: Some(format!("expected sequence {expected_sequence}")),
            ..self.broken(
                Reason::BrokenLink,
                Some(expected_prev.to_owned()),
                Some(self.event.prev_hash.to_owned()),
            )
        })
    }
}

/// Where a [`RunningFold`] stands, to resume it later (the background
/// verifier stores it between runs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FoldState {
    pub running_hash: String,
    pub event_count: i64,
    /// The last event folded: `(transaction_id, global_position)`.
    pub last: (i64, i64),
    pub checkpoints_checked: u64,
    /// The newest checkpoint passed.
    pub proven: Option<Checkpoint>,
}

/// The running hash folded in publishing order, compared with each
/// checkpoint as it is passed.
pub struct RunningFold {
    running_hash: String,
    event_count: i64,
    last: LogPosition,
    pending: VecDeque<Checkpoint>,
    keys: PublicKeys,
    pub checkpoints_checked: u64,
    /// The newest checkpoint passed.
    proven: Option<Checkpoint>,
}

impl RunningFold {
    /// `checkpoints` in publishing order.
    pub fn new(checkpoints: impl IntoIterator<Item = Checkpoint>, keys: PublicKeys) -> Self {
        Self {
            running_hash: String::new(),
            event_count: 0,
            last: LogPosition::default(),
            pending: checkpoints.into_iter().collect(),
            keys,
            checkpoints_checked: 0,
            proven: None,
        }
    }

    /// Continues from `state` with the checkpoints after it.
    pub fn resume(
        state: FoldState,
        checkpoints: impl IntoIterator<Item = Checkpoint>,
        keys: PublicKeys,
    ) -> Self {
        let (transaction_id, global_position) = state.last;
        Self {
            running_hash: state.running_hash,
            event_count: state.event_count,
            last: LogPosition {
                transaction_id,
                global_position,
            },
            pending: checkpoints.into_iter().collect(),
            keys,
            checkpoints_checked: state.checkpoints_checked,
            proven: state.proven,
        }
    }

    /// Where the fold stands, to [`resume`](Self::resume) it.
    pub fn state(&self) -> FoldState {
        FoldState {
            running_hash: self.running_hash.clone(),
            event_count: self.event_count,
            last: (self.last.transaction_id, self.last.global_position),
            checkpoints_checked: self.checkpoints_checked,
            proven: self.proven.clone(),
        }
    }

    /// Where the newest checkpoint passed stands, and how many events it
    /// signs: `(transaction_id, global_position, event_count)`.
    pub fn proven(&self) -> Option<(i64, i64, i64)> {
        self.proven
            .as_ref()
            .map(|c| (c.transaction_id, c.global_position, c.event_count))
    }

    /// The position of the last checkpoint still to be passed, if any.
    pub fn last_checkpoint(&self) -> Option<LogPosition> {
        self.pending.back().map(position_of)
    }

    pub fn push_checkpoint(&mut self, checkpoint: Checkpoint) {
        self.pending.push_back(checkpoint);
    }

    /// Folds the event at `position` with `hash`.
    pub fn fold(&mut self, position: LogPosition, hash: &str) -> Result<(), Broken> {
        self.pass_checkpoints_before(position)?;
        let folded = running_digest(&self.running_hash, hash, position);
        // In place: the fold runs once per event.
        self.running_hash.clear();
        self.running_hash.push_str(folded.as_str());
        self.event_count += 1;
        self.last = position;
        self.check_checkpoints_at(position)
    }

    /// After the last event: no checkpoint may be left unpassed.
    pub fn finish(&mut self) -> Result<(), Broken> {
        self.pass_checkpoints_before(LogPosition {
            transaction_id: i64::MAX,
            global_position: i64::MAX,
        })
    }

    /// A checkpoint before `position` that the fold did not stop at names
    /// an event that is gone.
    fn pass_checkpoints_before(&mut self, position: LogPosition) -> Result<(), Broken> {
        match self.pending.front() {
            Some(checkpoint)
                if position_of(checkpoint) < position && position_of(checkpoint) != self.last =>
            {
                Err(Broken::at_checkpoint(
                    checkpoint.global_position,
                    Reason::CheckpointEventMissing,
                ))
            }
            _ => Ok(()),
        }
    }

    fn check_checkpoints_at(&mut self, position: LogPosition) -> Result<(), Broken> {
        while let Some(checkpoint) = self.pending.front().filter(|c| position_of(c) == position) {
            checkpoint.verify(&self.keys).map_err(|error| Broken {
                detail: Some(error.to_string()),
                ..Broken::at_checkpoint(checkpoint.global_position, Reason::BadSignature)
            })?;
            if checkpoint.running_hash != self.running_hash
                || checkpoint.event_count != self.event_count
            {
                return Err(Broken {
                    expected: Some(checkpoint.running_hash.clone()),
                    found: Some(self.running_hash.clone()),
                    detail: Some(format!(
                        "{} events signed, {} found up to here",
                        checkpoint.event_count, self.event_count
                    )),
                    ..Broken::at_checkpoint(checkpoint.global_position, Reason::CheckpointMismatch)
                });
            }
            self.proven = self.pending.pop_front();
            self.checkpoints_checked += 1;
        }
        Ok(())
    }
}

fn position_of(checkpoint: &Checkpoint) -> LogPosition {
    LogPosition {
        transaction_id: checkpoint.transaction_id,
        global_position: checkpoint.global_position,
    }
}

/// Each trusted checkpoint (held outside the database) must verify with
/// `keys` and be among the log's checkpoints unchanged; the fold then
/// proves the log extends it. The number matched, or the first missing.
pub fn match_trusted(
    trusted: &[Checkpoint],
    log: &[Checkpoint],
    keys: &PublicKeys,
) -> Result<u64, Broken> {
    for checkpoint in trusted {
        checkpoint.verify(keys).map_err(|error| Broken {
            detail: Some(format!("trusted checkpoint: {error}")),
            ..Broken::at_checkpoint(checkpoint.global_position, Reason::BadSignature)
        })?;
        if !log.contains(checkpoint) {
            return Err(Broken {
                detail: Some(format!(
                    "the trusted checkpoint of {} events is not in the log unchanged",
                    checkpoint.event_count
                )),
                ..Broken::at_checkpoint(
                    checkpoint.global_position,
                    Reason::TrustedCheckpointMissing,
                )
            });
        }
    }
    Ok(trusted.len() as u64)
}
