//! `api audit verify`, `api audit public-key` and `api audit checkpoints`:
//! the proof checked from a shell, against the database or against an
//! export file alone (no database, no network: only the public keys), and
//! the checkpoints to keep where the database's administrators cannot
//! reach them.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::Context;
use app::integrity::{listed_keys, verify_store, ExportVerifier, VerifyReport};
use infra::integrity::{
    public_key_pem, stored_checkpoints, Checkpoint, CheckpointLine, PublicKeys,
};
use infra::settings::CommonSettings;

/// The checkpoints of a trusted-checkpoints file: one `{"checkpoint": {...}}`
/// per line (blank lines are skipped).
pub fn read_trusted_checkpoints(file: &Path) -> anyhow::Result<Vec<Checkpoint>> {
    let opened = File::open(file).with_context(|| format!("open {}", file.display()))?;
    let mut checkpoints = Vec::new();
    for (number, line) in BufReader::new(opened).lines().enumerate() {
        let line = line.with_context(|| format!("read {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: CheckpointLine = serde_json::from_str(&line).with_context(|| {
            format!(
                "line {} of {} is not a checkpoint line",
                number + 1,
                file.display()
            )
        })?;
        checkpoints.push(parsed.checkpoint);
    }
    Ok(checkpoints)
}

/// Writes every signed checkpoint, oldest first, to `output` (through
/// `output.partial`, renamed when complete); returns how many.
pub async fn checkpoints_to_file(common: &CommonSettings, output: &Path) -> anyhow::Result<usize> {
    let pool = infra::db::connect(&common.database_url, 1)
        .await
        .context("connect to the database")?;
    let checkpoints = stored_checkpoints(&pool, None)
        .await
        .context("read the checkpoints")?;
    let mut partial = output.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let mut file = std::io::BufWriter::new(
        File::create(&partial).with_context(|| format!("create {}", partial.display()))?,
    );
    for checkpoint in &checkpoints {
        let line = CheckpointLine {
            checkpoint: checkpoint.clone(),
        };
        writeln!(file, "{}", line.to_json())
            .with_context(|| format!("write {}", partial.display()))?;
    }
    file.into_inner()
        .map_err(|error| error.into_error())
        .and_then(|file| file.sync_all())
        .with_context(|| format!("write {}", partial.display()))?;
    std::fs::rename(&partial, output)
        .with_context(|| format!("rename {} to {}", partial.display(), output.display()))?;
    Ok(checkpoints.len())
}

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
    trusted: &[Checkpoint],
) -> anyhow::Result<VerifyReport> {
    let keys = public_key.map(read_public_keys).transpose()?;
    let pool = infra::db::connect(&common.database_url, 2)
        .await
        .context("connect to the database")?;
    verify_store(&pool, keys, trusted)
        .await
        .context("verify the event store")
}

/// An export file, line by line, checked with the keys in `public_key`.
pub fn verify_export(
    export: &Path,
    public_key: &Path,
    trusted: Vec<Checkpoint>,
) -> anyhow::Result<VerifyReport> {
    let keys = read_public_keys(public_key)?;
    let file = File::open(export).with_context(|| format!("open {}", export.display()))?;
    let mut verifier = ExportVerifier::new(keys, trusted);
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
