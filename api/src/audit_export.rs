//! `api audit export`: the export endpoint's NDJSON written to a file from
//! the database, with a progress bar on a terminal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use app::audit::AuditQueries;
use indicatif::{ProgressBar, ProgressStyle};
use infra::settings::CommonSettings;

use crate::routes::audit::export::NdjsonExport;
use crate::routes::audit::FilterQuery;

/// What an export wrote.
#[derive(Debug)]
pub struct ExportSummary {
    pub events: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub newest_global_position: i64,
    pub output: PathBuf,
}

impl std::fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.elapsed.as_secs_f64().max(f64::EPSILON);
        write!(
            f,
            "exported {} events ({:.1} MB) up to global position {} to {} in {:.2} s: \
             {:.0} events/s, {:.1} MB/s",
            self.events,
            self.bytes as f64 / 1e6,
            self.newest_global_position,
            self.output.display(),
            seconds,
            self.events as f64 / seconds,
            self.bytes as f64 / 1e6 / seconds,
        )
    }
}

/// Writes the export to `output`, through `output.partial` so that a file
/// under the final name is always complete.
pub async fn export_to_file(
    common: &CommonSettings,
    filters: FilterQuery,
    output: &Path,
) -> anyhow::Result<ExportSummary> {
    let started = Instant::now();
    let filter = filters.parse().context("the filters")?;
    let pool = infra::db::connect(&common.database_url, 2)
        .await
        .context("connect to the database")?;
    let export = AuditQueries::new(pool)
        .export(filter)
        .await
        .context("start the export")?;
    let total = export.count().await.context("count the events")?;
    let newest_global_position = export.header().newest_global_position;
    let mut ndjson = NdjsonExport::new(export);
    let partial = partial_path(output);
    let file =
        std::fs::File::create(&partial).with_context(|| format!("create {}", partial.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let progress = progress_bar(total as u64);
    let mut bytes = 0;
    while let Some(chunk) = ndjson.next_chunk().await.context("read the event store")? {
        writer
            .write_all(&chunk)
            .with_context(|| format!("write {}", partial.display()))?;
        bytes += chunk.len() as u64;
        progress.set_position(ndjson.events());
    }
    writer
        .into_inner()
        .map_err(|error| error.into_error())
        .and_then(|file| file.sync_all())
        .with_context(|| format!("flush {}", partial.display()))?;
    std::fs::rename(&partial, output)
        .with_context(|| format!("rename {} to {}", partial.display(), output.display()))?;
    progress.finish_and_clear();
    Ok(ExportSummary {
        events: ndjson.events(),
        bytes,
        elapsed: started.elapsed(),
        newest_global_position,
        output: output.to_owned(),
    })
}

fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Drawn on standard error only when it is a terminal.
fn progress_bar(total: u64) -> ProgressBar {
    let progress = ProgressBar::new(total);
    // indicatif's own {per_sec} prints four decimals of a rate in the
    // thousands; whole events per second are what a person reads.
    let style = ProgressStyle::with_template(
        "{bar:40} {pos}/{len} events  {rate}  eta {eta}  {elapsed_precise}",
    )
    .expect("a valid progress template")
    .with_key(
        "rate",
        |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
            let _ = write!(out, "{:.0} events/s", state.per_sec());
        },
    );
    progress.set_style(style);
    progress
}
