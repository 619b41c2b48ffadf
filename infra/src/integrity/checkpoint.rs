//! Signed checkpoints of the running hash: where the log stood, what its
//! running hash was, how many events it held, signed with Ed25519 by the
//! relay's audit key (not the JWT key).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{push_field, sha256_hex};

const CHECKPOINT_DOMAIN: &str = "identity-checkpoint/1";
/// The routing key each signed checkpoint is published under on the events
/// exchange, as a [`CheckpointLine`], so that witnesses can keep copies.
pub const CHECKPOINT_ROUTING_KEY: &str = "audit.checkpoint";
const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PEM_END: &str = "-----END PUBLIC KEY-----";

/// The columns of `audit_checkpoints` a [`Checkpoint`] reads, in its order.
pub const CHECKPOINT_COLUMNS: &str =
    "transaction_id, global_position, running_hash, event_count, created_at, key_id, signature";

/// The stored checkpoints in publishing order, up to and including `up_to`
/// (all of them without it).
pub async fn stored_checkpoints(
    db: impl sqlx::PgExecutor<'_>,
    up_to: Option<crate::event_log::LogPosition>,
) -> sqlx::Result<Vec<Checkpoint>> {
    let up_to = up_to.unwrap_or(crate::event_log::LogPosition {
        transaction_id: i64::MAX,
        global_position: i64::MAX,
    });
    sqlx::query_as(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints \
         WHERE (transaction_id, global_position) <= ($1, $2) \
         ORDER BY transaction_id, global_position"
    ))
    .bind(up_to.transaction_id)
    .bind(up_to.global_position)
    .fetch_all(db)
    .await
}

/// The stored checkpoints after `after`, in publishing order.
pub async fn checkpoints_after(
    db: impl sqlx::PgExecutor<'_>,
    after: crate::event_log::LogPosition,
) -> sqlx::Result<Vec<Checkpoint>> {
    sqlx::query_as(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints \
         WHERE (transaction_id, global_position) > ($1, $2) \
         ORDER BY transaction_id, global_position"
    ))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .fetch_all(db)
    .await
}

/// A row of `audit_checkpoints`, and a line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Checkpoint {
    pub transaction_id: i64,
    pub global_position: i64,
    pub running_hash: String,
    pub event_count: i64,
    pub created_at: DateTime<Utc>,
    pub key_id: String,
    /// Ed25519 over [`Checkpoint::message`], base64.
    pub signature: String,
}

/// A checkpoint as one line of JSON, `{"checkpoint": {...}}`: an export's
/// checkpoint lines, the broker's checkpoint messages and the lines of a
/// trusted-checkpoints file (`api audit checkpoints`) all have this shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointLine {
    pub checkpoint: Checkpoint,
}

impl CheckpointLine {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a checkpoint always serializes")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("signed by key {0}, which is not among the public keys")]
    UnknownKey(String),
    #[error("the signature is malformed")]
    MalformedSignature,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("no public key could be read")]
    NoPublicKey,
}

impl Checkpoint {
    /// Signs a checkpoint of `running_hash` after `event_count` events.
    pub fn sign(
        key: &SigningKey,
        (transaction_id, global_position): (i64, i64),
        running_hash: String,
        event_count: i64,
        created_at: DateTime<Utc>,
    ) -> Self {
        let mut checkpoint = Self {
            transaction_id,
            global_position,
            running_hash,
            event_count,
            created_at,
            key_id: key_id(&key.verifying_key()),
            signature: String::new(),
        };
        checkpoint.signature = STANDARD.encode(key.sign(&checkpoint.message()).to_bytes());
        checkpoint
    }

    /// Where in publishing order it stands.
    pub fn position(&self) -> crate::event_log::LogPosition {
        crate::event_log::LogPosition {
            transaction_id: self.transaction_id,
            global_position: self.global_position,
        }
    }

    /// The broker message id of its publication.
    pub fn message_id(&self) -> String {
        format!(
            "checkpoint-{}-{}",
            self.transaction_id, self.global_position
        )
    }

    /// The signed bytes: every field but the signature, length-prefixed.
    pub fn message(&self) -> Vec<u8> {
        let mut message = CHECKPOINT_DOMAIN.as_bytes().to_vec();
        for field in [
            &self.transaction_id.to_string(),
            &self.global_position.to_string(),
            &self.running_hash,
            &self.event_count.to_string(),
            &self.created_at.timestamp_micros().to_string(),
            &self.key_id,
        ] {
            push_field(&mut message, field);
        }
        message
    }

    pub fn verify(&self, keys: &PublicKeys) -> Result<(), CheckpointError> {
        let key = keys
            .get(&self.key_id)
            .ok_or_else(|| CheckpointError::UnknownKey(self.key_id.clone()))?;
        let bytes = STANDARD
            .decode(&self.signature)
            .map_err(|_| CheckpointError::MalformedSignature)?;
        let signature =
            Signature::from_slice(&bytes).map_err(|_| CheckpointError::MalformedSignature)?;
        key.verify(&self.message(), &signature)
            .map_err(|_| CheckpointError::BadSignature)
    }
}

/// SPKI PEM: what `api audit public-key` prints and `--public-key` reads.
pub fn public_key_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("an Ed25519 public key always encodes")
}

/// A key's id: the first 16 hex digits of SHA-256 over its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())[..16].to_owned()
}

/// The public keys a verifier trusts, by id.
#[derive(Clone, Debug, Default)]
pub struct PublicKeys(BTreeMap<String, VerifyingKey>);

impl PublicKeys {
    pub fn insert(&mut self, key: VerifyingKey) {
        self.0.insert(key_id(&key), key);
    }

    pub fn get(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.0.get(key_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &VerifyingKey)> {
        self.0.iter()
    }

    /// Every `PUBLIC KEY` PEM block of `text` (what `api audit public-key` prints).
    pub fn from_pem(text: &str) -> Result<Self, CheckpointError> {
        let mut keys = Self::default();
        let mut rest = text;
        while let Some(start) = rest.find(PEM_BEGIN) {
            let Some(end) = rest[start..].find(PEM_END) else {
                break;
            };
            let block = &rest[start..start + end + PEM_END.len()];
            let key = VerifyingKey::from_public_key_pem(block)
                .map_err(|_| CheckpointError::NoPublicKey)?;
            keys.insert(key);
            rest = &rest[start + end + PEM_END.len()..];
        }
        if keys.0.is_empty() {
            return Err(CheckpointError::NoPublicKey);
        }
        Ok(keys)
    }

    /// A key stored as base64 of its 32 bytes (`audit_signing_keys.public_key`).
    pub fn insert_base64(&mut self, encoded: &str) -> Result<(), CheckpointError> {
        let bytes: [u8; 32] = STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(CheckpointError::NoPublicKey)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| CheckpointError::NoPublicKey)?;
        self.insert(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::EncodePublicKey;

    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint::sign(&key(1), (9, 42), "ab".repeat(32), 42, Utc::now())
    }

    fn keys(seeds: &[u8]) -> PublicKeys {
        let mut keys = PublicKeys::default();
        for seed in seeds {
            keys.insert(key(*seed).verifying_key());
        }
        keys
    }

    #[test]
    fn a_signed_checkpoint_verifies_with_its_public_key() {
        assert_eq!(checkpoint().verify(&keys(&[1, 2])), Ok(()));
    }

    #[test]
    fn any_altered_field_breaks_the_signature() {
        let altered: [fn(&mut Checkpoint); 5] = [
            |c| c.global_position += 1,
            |c| c.transaction_id += 1,
            |c| c.running_hash = "cd".repeat(32),
            |c| c.event_count -= 1,
            |c| c.created_at += chrono::TimeDelta::seconds(1),
        ];
        for alter in altered {
            let mut checkpoint = checkpoint();
            alter(&mut checkpoint);
            assert_eq!(
                checkpoint.verify(&keys(&[1])),
                Err(CheckpointError::BadSignature)
            );
        }
    }

    #[test]
    fn a_key_not_trusted_is_named() {
        let checkpoint = checkpoint();
        assert_eq!(
            checkpoint.verify(&keys(&[2])),
            Err(CheckpointError::UnknownKey(checkpoint.key_id.clone()))
        );
    }

    #[test]
    fn public_keys_are_read_from_several_pem_blocks() {
        let pem: String = [1, 2]
            .iter()
            .map(|seed| {
                key(*seed)
                    .verifying_key()
                    .to_public_key_pem(LineEnding::LF)
                    .unwrap()
            })
            .collect();
        let read = PublicKeys::from_pem(&pem).unwrap();
        assert_eq!(read.iter().count(), 2);
        assert_eq!(checkpoint().verify(&read), Ok(()));
        assert_eq!(
            PublicKeys::from_pem("nothing").unwrap_err(),
            CheckpointError::NoPublicKey
        );
    }
}
