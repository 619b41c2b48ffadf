//! `projector rebuild --exit`: every read model rebuilt from the whole event
//! store into new tables and swapped in, while the live projector runs. A
//! rebuild still running after its time limit is stopped, and its rate is
//! what it had replayed by then: `audit_log_next` gets one row per event.
//! Its limit, measured right after it: PostgreSQL handing a client the rows
//! the rebuild reads.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::TryStreamExt;
use infra::event_log::{columns_of, HORIZON};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};

use crate::services::{log_tail, Service};

const POLL: Duration = Duration::from_millis(20);

/// How far the rebuild got, and in how long.
#[derive(Clone, Debug)]
pub struct Rebuilt {
    /// Events replayed: all of them (from its log line) when it finished,
    /// else the rows of `audit_log_next` at the limit.
    pub events: u64,
    /// Spawn -> exit, or spawn -> the count at the limit.
    pub wall: Duration,
    pub finished: bool,
    /// Events in the store when it started.
    pub store_events: u64,
    /// The limit, measured once the rebuild ended.
    pub raw: RawRead,
}

impl Rebuilt {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }
}

/// PostgreSQL alone handing a client every row the rebuild reads.
#[derive(Clone, Debug)]
pub struct RawRead {
    pub rows: u64,
    pub wall: Duration,
}

impl RawRead {
    pub fn per_second(&self) -> f64 {
        self.rows as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }
}

pub async fn run(
    projector_bin: &Path,
    env: &[(&'static str, String)],
    run_dir: &Path,
    db_url: &SecretString,
    limit: Duration,
) -> anyhow::Result<Rebuilt> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    let store_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut db)
        .await?;
    let log = run_dir.join("projector-rebuild.log");
    let args = ["rebuild".as_ref(), "--exit".as_ref()];
    let started = Instant::now();
    let mut command = Service::start("projector rebuild", projector_bin, &args, env, log.clone())?;
    let (events, wall, finished) = loop {
        if let Some(status) = command.try_exit()? {
            let wall = started.elapsed();
            anyhow::ensure!(
                status.success(),
                "projector rebuild failed ({status}); end of {}:\n{}",
                log.display(),
                log_tail(&log, 15)
            );
            break (logged_events(&log)?, wall, true);
        }
        if started.elapsed() >= limit {
            let replayed: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log_next")
                .fetch_one(&mut db)
                .await
                .context("count the rows of audit_log_next")?;
            let wall = started.elapsed();
            command.stop().await?;
            break (replayed as u64, wall, false);
        }
        tokio::time::sleep(POLL).await;
    };
    let raw = raw_read(&mut db).await?;
    let _ = db.close().await;
    Ok(Rebuilt {
        events,
        wall,
        finished,
        store_events: store_events as u64,
        raw,
    })
}

/// The rebuild's read (`infra::event_log::read_committed_after`: its
/// columns, horizon and order) over the whole log as ONE query streamed
/// with `fetch`, the rows counted, not decoded.
async fn raw_read(db: &mut PgConnection) -> anyhow::Result<RawRead> {
    let sql = format!(
        "SELECT {} FROM events e WHERE e.transaction_id < {HORIZON} \
         ORDER BY e.transaction_id, e.global_position",
        columns_of("e")
    );
    let started = Instant::now();
    let mut rows = 0u64;
    let mut stream = sqlx::query(&sql).fetch(&mut *db);
    while stream
        .try_next()
        .await
        .context("PostgreSQL reading the rebuild's rows")?
        .is_some()
    {
        rows += 1;
    }
    Ok(RawRead {
        rows,
        wall: started.elapsed(),
    })
}

/// The `events` of the log line `rebuilt`.
fn logged_events(log: &Path) -> anyhow::Result<u64> {
    let output = std::fs::read_to_string(log).with_context(|| format!("{}", log.display()))?;
    output
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["message"] == "rebuilt")
        .and_then(|entry| entry["events"].as_u64())
        .with_context(|| format!("no `rebuilt` line with events in {}", log.display()))
}
