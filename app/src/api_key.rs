//! The API key format: `idsk_<key id>_<secret>_<checksum>`, all lowercase
//! hex: the key id is the key's UUID (32 digits, no hyphens), the secret 256
//! random bits (64 digits), the checksum the first 4 bytes of the SHA-256 of
//! everything before it (8 digits). The fixed prefix and shape let secret
//! scanners find a leaked key and tell it from random text by its checksum;
//! the key id finds the stored key with one primary-key probe; the service
//! stores only the SHA-256 of the whole key ([`ApiKey::digest`]). A fast
//! hash is right here, unlike for passwords: the secret has full entropy,
//! so there is nothing to guess from the digest. DESIGN.md argues it.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use domain::ApiKeyHash;
use infra::integrity::HexDigest;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What every key starts with.
pub const PREFIX: &str = "idsk_";
const SECRET_BYTES: usize = 32;
const CHECKSUM_BYTES: usize = 4;
/// `idsk_` + 32 + `_` + 64 + `_` + 8.
pub const LENGTH: usize = PREFIX.len() + 32 + 1 + 2 * SECRET_BYTES + 1 + 2 * CHECKSUM_BYTES;

/// A whole key: shown once when issued, then only its digest is kept.
pub struct ApiKey {
    key_id: Uuid,
    value: SecretString,
}

/// Why a text is not an API key. Carries nothing of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("not shaped like an API key")]
    Shape,
    #[error("the API key's checksum does not match")]
    Checksum,
}

impl ApiKey {
    /// A new key with the id `key_id` and a fresh secret.
    pub fn generate(key_id: Uuid) -> Self {
        let mut secret = [0u8; SECRET_BYTES];
        OsRng.fill_bytes(&mut secret);
        let body = format!("{PREFIX}{}_{}", key_id.simple(), hex(&secret));
        let value = format!("{body}_{}", checksum(&body));
        Self {
            key_id,
            value: SecretString::from(value),
        }
    }

    /// Whether `text` claims to be an API key (its prefix), so that a
    /// bearer credential is checked as one rather than as a token.
    pub fn claims_to_be(text: &str) -> bool {
        text.starts_with(PREFIX)
    }

    /// Checks the shape and the checksum; says nothing about whether the
    /// key was ever issued.
    pub fn parse(text: &str) -> Result<Self, KeyFormatError> {
        let shaped = text.len() == LENGTH
            && text.starts_with(PREFIX)
            && text[PREFIX.len()..]
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'_'));
        let parts: Vec<&str> = match shaped {
            true => text[PREFIX.len()..].split('_').collect(),
            false => return Err(KeyFormatError::Shape),
        };
        let [id, secret, sum] = parts[..] else {
            return Err(KeyFormatError::Shape);
        };
        if id.len() != 32 || secret.len() != 2 * SECRET_BYTES || sum.len() != 2 * CHECKSUM_BYTES {
            return Err(KeyFormatError::Shape);
        }
        let body = &text[..text.len() - sum.len() - 1];
        if checksum(body) != sum {
            return Err(KeyFormatError::Checksum);
        }
        let key_id = Uuid::try_parse(id).map_err(|_| KeyFormatError::Shape)?;
        Ok(Self {
            key_id,
            value: SecretString::from(text.to_owned()),
        })
    }

    pub fn key_id(&self) -> Uuid {
        self.key_id
    }

    /// The lowercase hex SHA-256 of the whole key: what is stored.
    pub fn digest(&self) -> ApiKeyHash {
        ApiKeyHash::new(HexDigest::of(self.value.expose_secret().as_bytes()).to_string())
    }

    /// The key itself, to hand to the client once.
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({}, ..)", self.key_id)
    }
}

/// Whether two digests are equal, in time independent of where they differ.
pub fn digests_match(stored: &str, presented: &ApiKeyHash) -> bool {
    let (a, b) = (stored.as_bytes(), presented.as_str().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn checksum(body: &str) -> String {
    hex(&Sha256::digest(body.as_bytes())[..CHECKSUM_BYTES])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_to_its_id_and_digest() {
        let key_id = Uuid::now_v7();
        let key = ApiKey::generate(key_id);
        assert_eq!(key.expose().len(), LENGTH);
        assert!(ApiKey::claims_to_be(key.expose()));
        let parsed = ApiKey::parse(key.expose()).unwrap();
        assert_eq!(parsed.key_id(), key_id);
        assert_eq!(parsed.digest(), key.digest());
        assert_ne!(ApiKey::generate(key_id).digest(), key.digest());
        assert!(!format!("{key:?}").contains(&key.expose()[40..]));
    }

    /// A fixed key, so an outside implementation can check its checksum.
    #[test]
    fn the_checksum_is_the_first_four_bytes_of_the_sha256_of_the_rest() {
        let body = format!("idsk_{}_{}", "0".repeat(32), "1".repeat(64));
        let key = format!("{body}_{}", checksum(&body));
        assert_eq!(checksum(&body).len(), 8);
        let digest = Sha256::digest(body.as_bytes());
        assert_eq!(checksum(&body), hex(&digest[..4]));
        assert_eq!(ApiKey::parse(&key).unwrap().key_id(), Uuid::nil());
    }

    #[test]
    fn a_typo_or_a_wrong_shape_is_refused_before_any_lookup() {
        let key = ApiKey::generate(Uuid::now_v7());
        let text = key.expose().to_owned();
        let mut typo = text.clone().into_bytes();
        typo[50] = if typo[50] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(ApiKey::parse(&typo).unwrap_err(), KeyFormatError::Checksum);
        for bad in [
            "",
            "idsk_",
            &text[..text.len() - 1],
            &format!("{text}0"),
            &text.to_uppercase(),
            &text.replacen("idsk_", "idsx_", 1),
            &text.replace('_', "-"),
        ] {
            assert!(ApiKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests_match_only_when_equal() {
        let key = ApiKey::generate(Uuid::now_v7());
        let digest = key.digest();
        assert!(digests_match(digest.as_str(), &digest));
        assert!(!digests_match(&"0".repeat(64), &digest));
        assert!(!digests_match("", &digest));
    }
}
