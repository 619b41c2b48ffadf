//! A service account for the API-key phase, provisioned the way an
//! operator's script does it: `api admin service-account create`.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::export::run_command;

/// What `api admin service-account create` prints (the fields used here).
#[derive(Deserialize)]
struct Provisioned {
    key: String,
}

/// An API key of a new service account holding the `admin` role (made by
/// `api admin bootstrap`), scoped to `users:read`.
pub async fn api_key(
    api_bin: &Path,
    env: &[(&'static str, String)],
    run_dir: &Path,
) -> anyhow::Result<String> {
    let log = run_dir.join("admin-service-account.log");
    let args = [
        "admin",
        "service-account",
        "create",
        "--name",
        "bench",
        "--role",
        "admin",
        "--scope",
        "users:read",
    ]
    .map(std::ffi::OsStr::new);
    let (_, output) = run_command(
        "api admin service-account create",
        api_bin,
        &args,
        env,
        &log,
    )
    .await?;
    let line = output
        .lines()
        .find(|line| line.starts_with("{\"service_account_id\""))
        .with_context(|| format!("no account printed; see {}", log.display()))?;
    let provisioned: Provisioned =
        serde_json::from_str(line).context("the printed service account")?;
    Ok(provisioned.key)
}
