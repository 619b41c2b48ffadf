//! `projector rebuild --exit`: every read model rebuilt from the whole event
//! store into new tables and swapped in, while the live projector runs.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::export::run_command;

/// What the rebuild log line says, and how long the command took.
#[derive(Clone, Debug)]
pub struct Rebuilt {
    pub events: u64,
    /// Spawn -> exit.
    pub wall: Duration,
}

impl Rebuilt {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }
}

pub async fn run(
    projector_bin: &Path,
    env: &[(&'static str, String)],
    run_dir: &Path,
) -> anyhow::Result<Rebuilt> {
    let log = run_dir.join("projector-rebuild.log");
    let args = ["rebuild".as_ref(), "--exit".as_ref()];
    let (wall, output) = run_command("projector rebuild", projector_bin, &args, env, &log).await?;
    let events = output
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["message"] == "rebuilt")
        .and_then(|entry| entry["events"].as_u64())
        .with_context(|| format!("no `rebuilt` line with events in {}", log.display()))?;
    Ok(Rebuilt { events, wall })
}
