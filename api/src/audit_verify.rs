//! `api audit verify` and `api audit public-key`: the proof checked from a
//! shell, against the database or against an export file alone (no
//! database, no network: only the public keys).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::Context;
use app::integrity::{listed_keys, verify_store, ExportVerifier, VerifyReport};
use infra::integrity::{public_key_pem, PublicKeys};
use infra::settings::CommonSettings;

fn read_public_keys(file: &Path) -> anyhow::Result<PublicKeys> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("read the public keys {}", file.display()))?;
    PublicKeys::from_pem(&text).with_context(|| format!("the public keys in {}", file.display()))
}

/// Every stream and checkpoint of the database, checked with the keys in
/// `public_key` (the database's own list without it).
pub async fn verify_database(
    common: &CommonSettings,
    public_key: Option<&Path>,
) -> anyhow::Result<VerifyReport> {
    let keys = public_key.map(read_public_keys).transpose()?;
    let pool = infra::db::connect(&common.database_url, 2)
        .await
        .context("connect to the database")?;
    verify_store(&pool, keys)
        .await
        .context("verify the event store")
}

/// An export file, line by line, checked with the keys in `public_key`.
pub fn verify_export(export: &Path, public_key: &Path) -> anyhow::Result<VerifyReport> {
    let keys = read_public_keys(public_key)?;
    let file = File::open(export).with_context(|| format!("open {}", export.display()))?;
    let mut verifier = ExportVerifier::new(keys);
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("read {}", export.display()))?;
        if let Err(unreadable) = verifier.feed(&line) {
            return Err(unreadable).context("the export cannot be read");
        }
    }
    Ok(verifier.finish())
}

/// Every checkpoint signing key the relay listed, as SPKI PEM blocks.
pub async fn public_keys_pem(common: &CommonSettings) -> anyhow::Result<String> {
    let pool = infra::db::connect(&common.database_url, 1)
        .await
        .context("connect to the database")?;
    let mut pem = String::new();
    for listed in listed_keys(&pool).await.context("read the signing keys")? {
        let mut keys = PublicKeys::default();
        keys.insert_base64(&listed.public_key)
            .with_context(|| format!("key {} is malformed", listed.key_id))?;
        for (_, key) in keys.iter() {
            pem.push_str(&public_key_pem(key));
        }
    }
    Ok(pem)
}
