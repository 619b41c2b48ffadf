//! Ed25519 key files (PKCS#8 PEM): the JWT signing key and the audit
//! checkpoint signing key are both read, and generated for development, here.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, KeypairBytes};
use ed25519_dalek::SigningKey;
use rand_core::OsRng;
use secrecy::{ExposeSecret, SecretString};

/// Writes a new key pair for development: the private key readable by the
/// owner only, the public key beside it (`<file>.pub`). Several processes may
/// start at once: the key is written to a temporary file and linked into
/// place, so each one reads either no file or a whole one.
pub fn generate(private_file: &Path, what: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;

    let key = SigningKey::generate(&mut OsRng);
    // PKCS#8 v1 (no embedded public key), the form jsonwebtoken and openssl
    // `genpkey -algorithm ed25519` use.
    let private_pem = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)?;
    let public_pem = key.verifying_key().to_public_key_pem(LineEnding::LF)?;
    if let Some(dir) = private_file
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
    {
        fs::create_dir_all(dir)?;
    }
    let temporary = private_file.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(private_pem.as_bytes())?;
    file.sync_all()?;
    let linked = fs::hard_link(&temporary, private_file);
    fs::remove_file(&temporary)?;
    match linked {
        Ok(()) => {
            fs::write(public_file(private_file), public_pem)?;
            tracing::info!(file = %private_file.display(), "generated a {what}");
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error.into()),
    }
}

pub fn public_file(private_file: &Path) -> PathBuf {
    let mut name = private_file.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// The signing key in `file`, generated first when missing and `generate_if_missing`.
pub fn load_signing_key(
    file: &Path,
    generate_if_missing: bool,
    what: &str,
) -> anyhow::Result<SigningKey> {
    if generate_if_missing && !file.exists() {
        generate(file, what)?;
    }
    let pem: SecretString = fs::read_to_string(file)
        .with_context(|| format!("reading the {what} {}", file.display()))?
        .into();
    SigningKey::from_pkcs8_pem(pem.expose_secret()).with_context(|| {
        format!(
            "the {what} {} is not an Ed25519 PKCS#8 PEM key",
            file.display()
        )
    })
}
