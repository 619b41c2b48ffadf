//! What a verification found: counts, and the first broken link.

use serde::Serialize;

/// Why a link is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The stored hash is not the hash of the event's fields.
    HashMismatch,
    /// The payload or metadata is not what the sealed form commits to.
    SealMismatch,
    /// The event does not follow the previous event of its stream (a gap,
    /// or `prev_hash` is not that event's hash).
    BrokenLink,
    /// The running hash at a checkpoint differs: events were removed,
    /// added or reordered before it.
    CheckpointMismatch,
    /// A checkpoint's position has no event any more.
    CheckpointEventMissing,
    /// A checkpoint's signature does not verify with the public keys.
    BadSignature,
    /// An export line is not what the format says.
    MalformedLine,
}

/// The first place the proof fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Broken {
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub sequence: Option<i64>,
    pub global_position: Option<i64>,
    pub expected: Option<String>,
    pub found: Option<String>,
    pub reason: Reason,
    /// Where inside the event, or what about the checkpoint.
    pub detail: Option<String>,
}

impl Broken {
    pub fn at_checkpoint(global_position: i64, reason: Reason) -> Self {
        Self {
            aggregate_type: None,
            aggregate_id: None,
            sequence: None,
            global_position: Some(global_position),
            expected: None,
            found: None,
            reason,
            detail: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub events_checked: u64,
    pub checkpoints_checked: u64,
    pub first_broken: Option<Broken>,
}

impl VerifyReport {
    /// Keeps the first break found.
    pub(crate) fn broken(&mut self, broken: Broken) {
        if self.first_broken.is_none() {
            self.first_broken = Some(broken);
        }
    }

    pub(crate) fn finish(mut self) -> Self {
        self.ok = self.first_broken.is_none();
        self
    }
}
