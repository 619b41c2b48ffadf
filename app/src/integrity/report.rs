//! What a verification found: what it checked, what that proves, and the
//! first broken link.

use serde::{Deserialize, Serialize};

/// Why a link is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A value is shown erased or redacted (without its salt) where no
    /// recorded erasure or redaction rule allows it.
    UnexpectedErasure,
    /// A trusted checkpoint (held outside the database) is not in the log
    /// unchanged.
    TrustedCheckpointMissing,
}

/// The first place the proof fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// The events after the newest checkpoint that verified: each is checked
/// on its own and linked in its stream, but no signature covers them, so
/// they could be dropped or reordered unseen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnprovenTail {
    /// Where the newest verified checkpoint stands; null without one.
    pub after_transaction_id: Option<i64>,
    pub after_global_position: Option<i64>,
    pub events: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub events_checked: u64,
    pub checkpoints_checked: u64,
    /// Events up to and including the newest checkpoint that verified:
    /// their number, order and content are proven by its signature.
    pub events_proven: u64,
    /// Null for a filtered export: it proves no order or completeness.
    pub unproven_tail: Option<UnprovenTail>,
    /// Trusted checkpoints given (`--trusted-checkpoints`) found unchanged.
    pub trusted_checkpoints_matched: u64,
    /// A filtered export proves each event it holds, not that none is
    /// missing: it carries no checkpoints.
    pub filtered: bool,
    /// Erased values in a filtered export whose `user.erased` is not in it.
    pub erasure_markers_unconfirmed: u64,
    pub first_broken: Option<Broken>,
}

impl VerifyReport {
    /// Keeps the first break found.
    pub(crate) fn broken(&mut self, broken: Broken) {
        if self.first_broken.is_none() {
            self.first_broken = Some(broken);
        }
    }

    /// What the checkpoints passed prove: `proven` is where the newest one
    /// stands and how many events it signs.
    pub(crate) fn proven(&mut self, proven: Option<(i64, i64, i64)>) {
        self.events_proven = proven.map_or(0, |(_, _, events)| events.max(0) as u64);
        self.unproven_tail = (!self.filtered).then(|| UnprovenTail {
            after_transaction_id: proven.map(|(transaction_id, _, _)| transaction_id),
            after_global_position: proven.map(|(_, global_position, _)| global_position),
            events: self.events_checked.saturating_sub(self.events_proven),
        });
    }

    pub(crate) fn finish(mut self) -> Self {
        self.ok = self.first_broken.is_none();
        self
    }
}
