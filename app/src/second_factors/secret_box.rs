//! Authenticator-app secrets at rest: ChaCha20-Poly1305 with the operator's
//! 32-byte key (`SECOND_FACTOR_KEY_FILE`, base64), a fresh 12-byte nonce
//! per secret stored in front of the ciphertext, and the factor's id as
//! associated data, so a stored secret cannot be moved to another factor.
//! The secret must be recoverable to check codes, so it cannot be hashed.

use std::path::Path;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use domain::second_factor::totp::SECRET_BYTES;
use domain::TotpSecret;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use uuid::Uuid;

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

/// A stored secret that does not open: another key, or altered bytes.
#[derive(Debug, thiserror::Error)]
#[error("a second factor's secret does not decrypt with the configured key")]
pub struct SealBroken;

impl SecretBox {
    /// The key in `file` (generated first when missing and `generate`).
    pub fn load(file: &Path, generate: bool) -> anyhow::Result<Self> {
        if generate && !file.exists() {
            infra::key_file::generate_secret(file, KEY_BYTES, "second-factor key")?;
        }
        let text: SecretString = std::fs::read_to_string(file)
            .with_context(|| format!("reading the second-factor key {}", file.display()))?
            .into();
        let bytes: SecretSlice<u8> = STANDARD
            .decode(text.expose_secret().trim())
            .with_context(|| format!("{} is not base64", file.display()))?
            .into();
        anyhow::ensure!(
            bytes.expose_secret().len() == KEY_BYTES,
            "{} must hold {KEY_BYTES} bytes, base64",
            file.display()
        );
        Ok(Self::with_key(bytes.expose_secret()))
    }

    fn with_key(key: &[u8]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    pub fn seal(&self, factor_id: Uuid, secret: &TotpSecret) -> Vec<u8> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: factor_id.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(&nonce, payload)
            .expect("ChaCha20-Poly1305 encrypts any 20 bytes");
        [nonce.as_slice(), &sealed].concat()
    }

    pub fn open(&self, factor_id: Uuid, stored: &[u8]) -> Result<TotpSecret, SealBroken> {
        if stored.len() < NONCE_BYTES {
            return Err(SealBroken);
        }
        let (nonce, sealed) = stored.split_at(NONCE_BYTES);
        let payload = Payload {
            msg: sealed,
            aad: factor_id.as_bytes(),
        };
        let opened = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| SealBroken)?;
        let bytes: [u8; SECRET_BYTES] = opened.try_into().map_err(|_| SealBroken)?;
        Ok(TotpSecret::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_opens_only_with_its_key_and_its_factor() {
        let seal = SecretBox::with_key(&[7; KEY_BYTES]);
        let secret = TotpSecret::from_bytes([1; SECRET_BYTES]);
        let factor = Uuid::from_u128(1);
        let stored = seal.seal(factor, &secret);
        assert_ne!(
            seal.seal(factor, &secret),
            stored,
            "a fresh nonce each time"
        );
        assert_eq!(seal.open(factor, &stored).unwrap(), secret);
        assert!(seal.open(Uuid::from_u128(2), &stored).is_err());
        assert!(SecretBox::with_key(&[8; KEY_BYTES])
            .open(factor, &stored)
            .is_err());
        let mut altered = stored.clone();
        altered[20] ^= 1;
        assert!(seal.open(factor, &altered).is_err());
        assert!(seal.open(factor, &stored[..5]).is_err());
    }
}
