//! Which aggregates may be stored as snapshots, and in which shape.

use cqrs_es::Aggregate;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// An aggregate whose state may be stored as a snapshot: the state after
/// its stream's first events, so a command folds only what came after.
pub trait Snapshotted: Aggregate + Clone + Serialize + DeserializeOwned {
    /// The shape and meaning of the serialized state. Bump it whenever a
    /// field is added, removed or folded differently: stored snapshots of
    /// another schema are ignored (the stream is folded in full, once, and
    /// a snapshot of the new schema is written).
    const SNAPSHOT_SCHEMA: i32;
}

impl Snapshotted for crate::User {
    const SNAPSHOT_SCHEMA: i32 = 1;
}

impl Snapshotted for crate::Role {
    const SNAPSHOT_SCHEMA: i32 = 1;
}

impl Snapshotted for crate::Session {
    /// 1: the previous refresh token only (the older ones are in the history).
    /// 2: whether a second factor was used at the start.
    const SNAPSHOT_SCHEMA: i32 = 2;
}

impl Snapshotted for crate::Webhook {
    const SNAPSHOT_SCHEMA: i32 = 1;
}

impl Snapshotted for crate::AuditSigner {
    const SNAPSHOT_SCHEMA: i32 = 1;
}

impl Snapshotted for crate::ServiceAccount {
    const SNAPSHOT_SCHEMA: i32 = 1;
}

impl Snapshotted for crate::SecondFactors {
    const SNAPSHOT_SCHEMA: i32 = 1;
}
