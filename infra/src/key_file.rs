//! Key files: the Ed25519 keys (PKCS#8 PEM) of the JWT signer and the audit
//! checkpoint signer, and the symmetric key that encrypts second factors'
//! secrets, are read, and generated for development, here.

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
    let key = SigningKey::generate(&mut OsRng);
    // PKCS#8 v1 (no embedded public key), the form jsonwebtoken and openssl
    // `genpkey -algorithm ed25519` use.
    let private_pem = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)?;
    let public_pem = key.verifying_key().to_public_key_pem(LineEnding::LF)?;
    if write_new(private_file, private_pem.as_bytes())? {
        fs::write(public_file(private_file), public_pem)?;
        tracing::info!(file = %private_file.display(), "generated a {what}");
    }
    Ok(())
}

/// Writes `bytes` fresh random bytes, base64, to `file` for development
/// (readable by the owner only), unless another process got there first.
pub fn generate_secret(file: &Path, bytes: usize, what: &str) -> anyhow::Result<()> {
    use base64::Engine;
    use rand_core::RngCore;

    let mut secret = vec![0u8; bytes];
    OsRng.fill_bytes(&mut secret);
    let text = SecretString::from(base64::engine::general_purpose::STANDARD.encode(&secret));
    secret.fill(0);
    if write_new(file, format!("{}\n", text.expose_secret()).as_bytes())? {
        tracing::info!(file = %file.display(), "generated a {what}");
    }
    Ok(())
}

/// Writes `contents` to a new file at `path` (owner-only), through a
/// temporary file linked into place, so that several processes starting at
/// once each read either no file or a whole one. `false` when the file
/// already existed (it is left as it is).
fn write_new(path: &Path, contents: &[u8]) -> anyhow::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;

    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    let linked = fs::hard_link(&temporary, path);
    fs::remove_file(&temporary)?;
    match linked {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
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
