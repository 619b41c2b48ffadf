//! The Ed25519 keys that sign and verify access tokens, and the JWKS that
//! publishes the public halves. One key signs; retired keys only verify, and
//! stay published until the tokens they signed have expired.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretSlice};

pub const ALGORITHM: Algorithm = Algorithm::EdDSA;

pub struct SigningKeys {
    signing_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    jwks: JwkSet,
}

impl SigningKeys {
    /// Loads the signing key (a PKCS#8 PEM Ed25519 private key), generating
    /// it first when `generate_if_missing`, and the retired public keys (SPKI
    /// PEM) that still verify.
    pub fn load(
        signing_key_file: &Path,
        generate_if_missing: bool,
        retired_key_files: &[PathBuf],
    ) -> anyhow::Result<Self> {
        if generate_if_missing && !signing_key_file.exists() {
            infra::key_file::generate(signing_key_file, "JWT signing key")?;
        }
        // The private key's PEM is zeroed when dropped.
        let pem: SecretSlice<u8> = fs::read(signing_key_file)
            .with_context(|| format!("reading JWT signing key {}", signing_key_file.display()))?
            .into();
        let encoding = EncodingKey::from_ed_pem(pem.expose_secret()).with_context(|| {
            format!(
                "JWT_SIGNING_KEY_FILE {} is not an Ed25519 private key in PKCS#8 PEM",
                signing_key_file.display()
            )
        })?;
        let mut signing_jwk = Jwk::from_encoding_key(&encoding, ALGORITHM)?;
        let signing_kid = identify(&mut signing_jwk)?;
        let mut keys = SigningKeys {
            decoding: HashMap::from([(signing_kid.clone(), DecodingKey::try_from(&signing_jwk)?)]),
            jwks: JwkSet {
                keys: vec![signing_jwk],
            },
            signing_kid,
            encoding,
        };
        for file in retired_key_files
            .iter()
            .filter(|f| !f.as_os_str().is_empty())
        {
            keys.add_retired(file)?;
        }
        Ok(keys)
    }

    fn add_retired(&mut self, file: &Path) -> anyhow::Result<()> {
        let pem = fs::read(file).with_context(|| format!("reading JWT key {}", file.display()))?;
        let decoding = DecodingKey::from_ed_pem(&pem).with_context(|| {
            format!(
                "JWT_RETIRED_KEY_FILES: {} is not an Ed25519 public key in SPKI PEM",
                file.display()
            )
        })?;
        let mut jwk = Jwk::from_decoding_key(&decoding, Some(ALGORITHM))?;
        let kid = identify(&mut jwk)?;
        if let std::collections::hash_map::Entry::Vacant(entry) = self.decoding.entry(kid) {
            entry.insert(decoding);
            self.jwks.keys.push(jwk);
        }
        Ok(())
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    pub fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.decoding.get(kid)
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }
}

/// The key id is the RFC 7638 thumbprint, so every process derives the same
/// `kid` from the same key without configuring one.
fn identify(jwk: &mut Jwk) -> anyhow::Result<String> {
    let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
    Ok(kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_loads_and_publishes_one_jwk() {
        let dir = std::env::temp_dir().join(format!("keys-test-{}", uuid::Uuid::new_v4()));
        let file = dir.join("jwt.pem");
        let keys = SigningKeys::load(&file, true, &[]).unwrap();
        assert_eq!(keys.jwks().keys.len(), 1);
        let again = SigningKeys::load(&file, true, &[]).unwrap();
        assert_eq!(
            again.signing_kid(),
            keys.signing_kid(),
            "kept, not regenerated"
        );
        let retired = SigningKeys::load(
            &dir.join("new.pem"),
            true,
            &[infra::key_file::public_file(&file)],
        )
        .unwrap();
        assert_eq!(retired.jwks().keys.len(), 2);
        assert!(retired.decoding_key(keys.signing_kid()).is_some());
        let _ = fs::remove_dir_all(dir);
    }
}
