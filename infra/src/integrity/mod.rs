//! The log's proof, as pure functions over the formats the integrity
//! migration's trigger writes (docs/audit-log-specification.md spells them
//! out byte for byte): each event's hash chained in its stream over its
//! sealed form, the salted commitments of the sealed form, the running hash
//! over the whole log in publishing order, and the signed checkpoints of that
//! running hash.

mod checkpoint;
mod digest;
mod hash;
mod json;
mod seal;
mod sealing;
mod signer_state;

pub use checkpoint::{
    checkpoints_after, key_id, public_key_pem, stored_checkpoints, Checkpoint, CheckpointError,
    CheckpointLine, PublicKeys, CHECKPOINT_COLUMNS, CHECKPOINT_ROUTING_KEY,
};
pub use digest::HexDigest;
pub(crate) use digest::{push_field, sha256_hex, FieldHasher};
pub use hash::{
    event_digest, event_hash, running_digest, running_hash, ChainedEvent, HashDefect, HashVersion,
    HashedEvent, HashedEventRef, UnknownHashVersion,
};
pub use json::Json;
pub use seal::{check_seal, withhold_salts, Marker, SealMismatch, Withheld};
pub use sealing::{commitment, seal_event, seal_event_with, write_jsonb_text, Sealed};
pub use signer_state::{signer_state_file, SignerState, SignerStateError, SignerStateFile};
