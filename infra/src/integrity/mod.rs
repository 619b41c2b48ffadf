//! The log's proof, as pure functions over the formats the integrity
//! migration's trigger writes (the README spells them out byte for byte):
//! each event's hash chained in its stream over its sealed form, the salted
//! commitments of the sealed form, the running hash over the whole log in
//! publishing order, and the signed checkpoints of that running hash.

mod checkpoint;
mod hash;
mod seal;
mod sealing;
mod signer_state;

pub use checkpoint::{
    checkpoints_after, key_id, public_key_pem, stored_checkpoints, Checkpoint, CheckpointError,
    CheckpointLine, PublicKeys, CHECKPOINT_COLUMNS, CHECKPOINT_ROUTING_KEY,
};
pub use hash::{
    event_hash, running_hash, ChainedEvent, HashDefect, HashVersion, HashedEvent,
    UnknownHashVersion,
};
pub use seal::{check_seal, withhold_salts, Marker, SealMismatch, Withheld};
pub use sealing::{commitment, seal_event, seal_event_with, write_jsonb_text, Sealed};
pub use signer_state::{signer_state_file, SignerState, SignerStateError, SignerStateFile};

/// `f(x)`: the byte length of `x` in decimal, `:`, then `x`. Every field of
/// a hashed or signed message is written this way, so no two messages with
/// different fields share bytes.
pub(crate) fn push_field(message: &mut Vec<u8>, field: &str) {
    message.extend_from_slice(field.len().to_string().as_bytes());
    message.push(b':');
    message.extend_from_slice(field.as_bytes());
}

/// Lowercase hex of SHA-256 over `message`.
pub(crate) fn sha256_hex(message: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(message);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}
