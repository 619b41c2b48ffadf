//! The audit-export phase: a bulk seed of the event store (written before the
//! services start, the relay's checkpoint moved past it in the same
//! transaction), an auditor made with the real `api admin bootstrap`, then
//! `GET /v1/audit/export` downloaded as it streams while the API's RSS is
//! sampled, PostgreSQL's own rate for the same rows (the machine's limit),
//! and the `api audit export` command once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::TryStreamExt;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sqlx::{Connection, PgConnection, Row};

use crate::cpu;
use crate::relay_backlog::CHUNK_EVENTS;
use crate::run::AbortOnDrop;
use crate::services::{log_tail, Service};
use infra::event_log::LogPosition;

/// Renames per seeded user: each user is 1 + this many events.
const RENAMES_PER_USER: usize = 99;
pub const AUDITOR_EMAIL: &str = "bench-auditor@example.com";
/// Longest wait for the auditor's token to carry audit:read.
const AUDITOR_WAIT: Duration = Duration::from_secs(30);
/// How often the API's VmRSS is read during the download.
pub const RSS_EVERY: Duration = Duration::from_millis(10);
/// The export file of `api audit export`, in the run's directory; removed
/// once checked.
pub const CLI_OUTPUT: &str = "export.ndjson";
/// How a checkpoint line of the export begins (`{"checkpoint":{...}}`).
const CHECKPOINT_LINE: &[u8] = b"{\"checkpoint\":";
/// The auditor's password file, in the run's directory; removed once used.
pub const PASSWORD_FILE: &str = "auditor.password";

/// The seed, written before the services start.
#[derive(Clone, Debug)]
pub struct Seeded {
    pub users: usize,
    pub renames: usize,
    pub events: u64,
    /// The last seeded event; the relay's and the projection's checkpoints
    /// were advanced to it.
    pub last: LogPosition,
    /// The transactions: the inserts, the checkpoints and the commits.
    pub took: Duration,
    /// VACUUM (ANALYZE) events afterwards, so that autovacuum does not run
    /// during the timed phases.
    pub vacuum: Duration,
}

/// Seeds about `events` events (rounded up to whole users) in transactions
/// of at most [`CHUNK_EVENTS`] (the cluster is shared: one long transaction
/// would hold back every relay on it), each of which also advances the
/// relay's and the projection's checkpoints past its events.
pub async fn seed(db_url: &SecretString, events: u32) -> anyhow::Result<Seeded> {
    let events = events as usize;
    let users = events.div_ceil(RENAMES_PER_USER + 1);
    let renames = events.div_ceil(users) - 1;
    let users_per_chunk = (CHUNK_EVENTS / (renames + 1)).max(1);
    let started = Instant::now();
    let mut db = PgConnection::connect(db_url.expose_secret())
        .await
        .context("connect to seed")?;
    let metadata = infra::testing::request_metadata(None, "bench");
    let mut last = LogPosition::default();
    let mut users_left = users;
    while users_left > 0 {
        let chunk = users_left.min(users_per_chunk);
        last = seed_chunk(&mut db, chunk, renames, &metadata).await?;
        users_left -= chunk;
    }
    let took = started.elapsed();
    let started = Instant::now();
    sqlx::query("VACUUM (ANALYZE) events")
        .execute(&mut db)
        .await
        .context("VACUUM (ANALYZE) events")?;
    let vacuum = started.elapsed();
    let _ = db.close().await;
    Ok(Seeded {
        users,
        renames,
        events: (users * (1 + renames)) as u64,
        last,
        took,
        vacuum,
    })
}

/// `users` users of `renames` renames each, and both checkpoints moved
/// past them, in one transaction.
async fn seed_chunk(
    db: &mut PgConnection,
    users: usize,
    renames: usize,
    metadata: &bus::EventMetadata,
) -> anyhow::Result<LogPosition> {
    let mut tx = db.begin().await?;
    let last = infra::testing::seed_renamed_users(&mut tx, users, renames, metadata)
        .await
        .context("seed_renamed_users")?;
    relay::RELAY_CHECKPOINT
        .advance(&mut *tx, last)
        .await
        .context("advance the relay checkpoint")?;
    // The projector's checkpoint is the end of the applied prefix of the
    // log: seeded events it never receives would hold it back for good (and
    // every wait on it), so they count as projected long ago too.
    projector::projection::CHECKPOINT
        .advance(&mut *tx, last)
        .await
        .context("advance the projection checkpoint")?;
    tx.commit().await.context("commit the seed")?;
    Ok(last)
}

/// The auditor: made by `api admin bootstrap`, then logged in until its
/// token carries audit:read.
pub struct Auditor {
    pub bootstrap_wall: Duration,
    /// What `api admin bootstrap` printed.
    pub bootstrap_line: String,
    /// Logins until GET /v1/audit/events answered 200.
    pub logins: u32,
    /// From the end of the bootstrap (the projection reaching its events,
    /// then the logins) to that 200.
    pub waited: Duration,
    pub token: String,
}

#[derive(Deserialize)]
struct TokenPair {
    access_token: String,
}

pub async fn auditor(
    db_url: &SecretString,
    api_bin: &Path,
    env: &[(&'static str, String)],
    run_dir: &Path,
    run_id: &str,
    client: &reqwest::Client,
    base_url: &str,
) -> anyhow::Result<Auditor> {
    let password = format!("bench auditor {run_id}");
    let password_file = run_dir.join(PASSWORD_FILE);
    std::fs::write(&password_file, format!("{password}\n"))
        .with_context(|| format!("write {}", password_file.display()))?;
    let log = run_dir.join("admin-bootstrap.log");
    let args = [
        "admin".as_ref(),
        "bootstrap".as_ref(),
        "--email".as_ref(),
        AUDITOR_EMAIL.as_ref(),
        "--password-file".as_ref(),
        password_file.as_os_str(),
    ];
    let (bootstrap_wall, output) = run_command("api admin bootstrap", api_bin, &args, env, &log)
        .await
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&password_file);
        })?;
    std::fs::remove_file(&password_file)
        .with_context(|| format!("remove {}", password_file.display()))?;
    let bootstrap_line = output
        .lines()
        .find(|line| line.starts_with("admin user "))
        .with_context(|| {
            format!(
                "api admin bootstrap printed no summary; see {}",
                log.display()
            )
        })?
        .to_string();

    // Wait for the bootstrap's events to be projected before logging in: a
    // login before the user is projected is a failed login, and those are
    // rate limited per account.
    let started = Instant::now();
    let target = newest_event(db_url).await?;
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    while projector::projection::CHECKPOINT.load(&mut db).await? < target {
        anyhow::ensure!(
            started.elapsed() < AUDITOR_WAIT,
            "the projection did not reach the bootstrap's events (global position {}) in {} s",
            target.global_position,
            AUDITOR_WAIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = db.close().await;
    let mut logins = 0;
    loop {
        anyhow::ensure!(
            started.elapsed() < AUDITOR_WAIT,
            "{AUDITOR_EMAIL}: no token with audit:read after {logins} login(s) in {} s",
            AUDITOR_WAIT.as_secs()
        );
        logins += 1;
        let response = client
            .post(format!("{base_url}/v1/auth/login"))
            .json(&json!({ "email": AUDITOR_EMAIL, "password": password }))
            .send()
            .await
            .context("POST /v1/auth/login (auditor)")?;
        let status = response.status();
        let text = response.text().await?;
        let token = match status {
            StatusCode::OK => {
                serde_json::from_str::<TokenPair>(&text)
                    .with_context(|| format!("auditor login: unexpected body {text}"))?
                    .access_token
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            _ => anyhow::bail!("auditor login answered {status}: {text}"),
        };
        let response = client
            .get(format!("{base_url}/v1/audit/events?limit=1"))
            .bearer_auth(&token)
            .send()
            .await
            .context("GET /v1/audit/events (auditor)")?;
        match response.status() {
            StatusCode::OK => {
                return Ok(Auditor {
                    bootstrap_wall,
                    bootstrap_line,
                    logins,
                    waited: started.elapsed(),
                    token,
                });
            }
            // The role assignment is not in the token yet.
            StatusCode::FORBIDDEN => tokio::time::sleep(Duration::from_millis(20)).await,
            status => anyhow::bail!(
                "GET /v1/audit/events answered {status}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }
}

/// The API's resident set (VmRSS) before and during the download, in KiB.
#[derive(Clone, Debug)]
pub struct Rss {
    pub baseline_kib: u64,
    pub peak_kib: u64,
    pub samples: u64,
}

/// `GET /v1/audit/export`, read as it streams.
pub struct Download {
    pub events: u64,
    pub bytes: u64,
    /// The export's newest event (its header line).
    pub newest: LogPosition,
    /// Send -> the response's status and headers.
    pub first_byte: Duration,
    /// Send -> the last chunk.
    pub wall: Duration,
    pub chunks: u64,
    /// Signed checkpoint lines between the header and the events (an
    /// export of the whole log carries every checkpoint up to its newest).
    pub checkpoints: u64,
    pub rss: Rss,
    pub cpu: cpu::Usage,
    pub load_before: Option<String>,
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Downloads the whole export, counting bytes and lines, and checks its
/// first and last lines; the API's RSS is sampled every [`RSS_EVERY`] on a
/// task of its own meanwhile.
pub async fn download(
    base_url: &str,
    token: &str,
    seeded: u64,
    pids: (u32, u32),
) -> anyhow::Result<Download> {
    // No whole-request timeout (the shared client's 30 s would cut a long
    // download): a stall between two chunks fails instead.
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{base_url}/v1/audit/export");
    let api_pid = pids.0;
    let baseline_kib = rss_kib(api_pid).context("read VmRSS of the api")?;
    let peak = Arc::new(AtomicU64::new(baseline_kib));
    let samples = Arc::new(AtomicU64::new(1));
    let sampler = {
        let (peak, samples) = (peak.clone(), samples.clone());
        AbortOnDrop(tokio::spawn(async move {
            let mut every = tokio::time::interval(RSS_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                if let Some(rss) = rss_kib(api_pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                    samples.fetch_add(1, Ordering::Relaxed);
                }
            }
        }))
    };
    let load_before = cpu::load_average();
    let cpu_before = cpu::sample(pids.0, pids.1);
    let sent = Instant::now();
    let mut response = client
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let first_byte = sent.elapsed();
    let status = response.status();
    if status != StatusCode::OK {
        anyhow::bail!(
            "GET {url} answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    let (mut bytes, mut chunks, mut lines, mut checkpoints) = (0u64, 0u64, 0u64, 0u64);
    let mut first_line: Option<Vec<u8>> = None;
    let mut last_line = Vec::new();
    let mut pending = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("GET {url}: the body after {bytes} bytes"))?
    {
        bytes += chunk.len() as u64;
        chunks += 1;
        let mut rest = &chunk[..];
        while let Some(end) = rest.iter().position(|byte| *byte == b'\n') {
            pending.extend_from_slice(&rest[..end]);
            lines += 1;
            last_line = std::mem::take(&mut pending);
            if last_line.starts_with(CHECKPOINT_LINE) {
                checkpoints += 1;
            }
            if first_line.is_none() {
                first_line = Some(last_line.clone());
            }
            rest = &rest[end + 1..];
        }
        pending.extend_from_slice(rest);
    }
    let wall = sent.elapsed();
    let cpu = cpu::usage(&cpu_before, &cpu::sample(pids.0, pids.1));
    if let Some(rss) = rss_kib(api_pid) {
        peak.fetch_max(rss, Ordering::Relaxed);
        samples.fetch_add(1, Ordering::Relaxed);
    }
    drop(sampler);
    let rss = Rss {
        baseline_kib,
        peak_kib: peak.load(Ordering::Relaxed),
        samples: samples.load(Ordering::Relaxed),
    };

    anyhow::ensure!(
        pending.is_empty(),
        "the export ends without a newline ({} bytes after the last one)",
        pending.len()
    );
    let header: serde_json::Value = serde_json::from_slice(first_line.as_deref().unwrap_or(b""))
        .context("the export's first line is not JSON")?;
    let newest = LogPosition {
        transaction_id: header["export"]["newest_transaction_id"]
            .as_i64()
            .context("the first line has no export.newest_transaction_id")?,
        global_position: header["export"]["newest_global_position"]
            .as_i64()
            .context("the first line has no export.newest_global_position")?,
    };
    let events = end_line_events(&last_line)?;
    anyhow::ensure!(
        lines >= 2 + checkpoints && events == lines - 2 - checkpoints,
        "the end line says {events} events, but {lines} lines came \
         (header + {checkpoints} checkpoints + events + end)"
    );
    anyhow::ensure!(
        events >= seeded,
        "the export holds {events} events, fewer than the {seeded} seeded"
    );
    Ok(Download {
        events,
        bytes,
        newest,
        first_byte,
        wall,
        chunks,
        checkpoints,
        rss,
        cpu,
        load_before,
    })
}

/// N of the end line `{"end":{"events":N}}`.
fn end_line_events(line: &[u8]) -> anyhow::Result<u64> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct End {
        end: Count,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Count {
        events: u64,
    }
    let end: End = serde_json::from_slice(line).with_context(|| {
        format!(
            "the last line is not {{\"end\":{{\"events\":N}}}}: {}",
            String::from_utf8_lossy(&line[..line.len().min(200)])
        )
    })?;
    Ok(end.end.events)
}

/// Events in the store up to `newest` in publishing order: what the export
/// must hold.
pub async fn count_up_to(db_url: &SecretString, newest: LogPosition) -> anyhow::Result<u64> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events \
         WHERE (transaction_id, global_position) <= ($1::text::xid8, $2)",
    )
    .bind(newest.transaction_id)
    .bind(newest.global_position)
    .fetch_one(&mut db)
    .await?;
    let _ = db.close().await;
    Ok(count as u64)
}

/// PostgreSQL alone handing a client the rows of the export.
#[derive(Clone, Debug)]
pub struct RawRead {
    pub rows: u64,
    /// The values' bytes as received (binary protocol; json as text).
    pub bytes: u64,
    pub wall: Duration,
}

impl RawRead {
    pub fn per_second(&self) -> f64 {
        self.rows as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }
}

/// The export's rows and columns (`infra::event_log::columns_of`), up to
/// `newest`, in publishing order, as ONE query streamed with `fetch`;
/// counts rows and value bytes without decoding them.
pub async fn raw_read(db_url: &SecretString, newest: LogPosition) -> anyhow::Result<RawRead> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    let sql = format!(
        "SELECT {} FROM events e \
         WHERE (e.transaction_id, e.global_position) <= ($1::text::xid8, $2) \
         ORDER BY e.transaction_id, e.global_position",
        infra::event_log::columns_of("e")
    );
    let started = Instant::now();
    let (mut rows, mut bytes) = (0u64, 0u64);
    {
        let mut stream = sqlx::query(&sql)
            .bind(newest.transaction_id)
            .bind(newest.global_position)
            .fetch(&mut db);
        while let Some(row) = stream.try_next().await.context("the raw read")? {
            rows += 1;
            for column in 0..row.len() {
                bytes += row
                    .try_get_raw(column)?
                    .as_bytes()
                    .map_or(0, |value| value.len() as u64);
            }
        }
    }
    let wall = started.elapsed();
    let _ = db.close().await;
    Ok(RawRead { rows, bytes, wall })
}

/// `api audit export --output <run dir>/export.ndjson`, once.
pub struct CliExport {
    /// Spawn -> exit, as the bench saw it.
    pub wall: Duration,
    /// What the command printed.
    pub summary: String,
    pub events: u64,
    pub file_bytes: u64,
    pub output: PathBuf,
}

impl CliExport {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }
}

pub async fn cli_export(
    api_bin: &Path,
    env: &[(&'static str, String)],
    run_dir: &Path,
    seeded: u64,
) -> anyhow::Result<CliExport> {
    let output = run_dir.join(CLI_OUTPUT);
    let log = run_dir.join("audit-export.log");
    let args = [
        "audit".as_ref(),
        "export".as_ref(),
        "--output".as_ref(),
        output.as_os_str(),
    ];
    let (wall, printed) = run_command("api audit export", api_bin, &args, env, &log).await?;
    let summary = printed
        .lines()
        .find(|line| line.starts_with("exported "))
        .with_context(|| format!("api audit export printed no summary; see {}", log.display()))?
        .to_string();
    let file_bytes = std::fs::metadata(&output)
        .with_context(|| format!("{}", output.display()))?
        .len();
    let events = last_line_of(&output)
        .and_then(|line| end_line_events(&line))
        .with_context(|| format!("the end of {}", output.display()))?;
    anyhow::ensure!(
        events >= seeded,
        "{} holds {events} events, fewer than the {seeded} seeded",
        output.display()
    );
    Ok(CliExport {
        wall,
        summary,
        events,
        file_bytes,
        output,
    })
}

/// The file's last line, without its newline.
fn last_line_of(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();
    let tail = length.min(4096);
    file.seek(SeekFrom::Start(length - tail))?;
    let mut buffer = Vec::with_capacity(tail as usize);
    file.read_to_end(&mut buffer)?;
    let trimmed = buffer.strip_suffix(b"\n").context("no final newline")?;
    let start = trimmed
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |at| at + 1);
    Ok(trimmed[start..].to_vec())
}

/// Runs a one-off command of the api binary with the service's environment
/// (stdout and stderr to `log`) and returns its wall time and output; Err
/// when it fails.
pub(crate) async fn run_command(
    what: &'static str,
    bin: &Path,
    args: &[&std::ffi::OsStr],
    env: &[(&'static str, String)],
    log: &Path,
) -> anyhow::Result<(Duration, String)> {
    let started = Instant::now();
    let mut command = Service::start(what, bin, args, env, log.to_path_buf())?;
    let status = command.wait_exit().await?;
    let wall = started.elapsed();
    anyhow::ensure!(
        status.success(),
        "{what} failed ({status}); end of {}:\n{}",
        log.display(),
        log_tail(log, 15)
    );
    let output = std::fs::read_to_string(log).with_context(|| format!("{}", log.display()))?;
    Ok((wall, output))
}

/// The whole phase, for the report.
pub struct Export {
    pub seeded: Seeded,
    pub auditor: Auditor,
    pub download: Download,
    /// Events in the store up to the export's newest: what it must hold.
    pub expected: u64,
    /// Two raw reads, one before the download and one after; the faster
    /// is the machine's limit.
    pub raw: [RawRead; 2],
    pub cli: CliExport,
    /// Seeded events that arrived on the tap queue (the relay must have
    /// skipped them all).
    pub seeded_published: usize,
}

impl Export {
    pub fn raw_best(&self) -> &RawRead {
        self.raw
            .iter()
            .min_by_key(|raw| raw.wall)
            .expect("two reads")
    }
}

/// Where the phase puts its files, removed by the cleanup.
pub fn leftovers(run_dir: &Path) -> [PathBuf; 3] {
    let output = run_dir.join(CLI_OUTPUT);
    let mut partial = output.as_os_str().to_owned();
    partial.push(".partial");
    [output, PathBuf::from(partial), run_dir.join(PASSWORD_FILE)]
}

/// The newest event in publishing order (the start of the log when empty).
pub async fn newest_event(db_url: &SecretString) -> anyhow::Result<LogPosition> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    let newest: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events \
         ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1",
    )
    .fetch_optional(&mut db)
    .await?;
    let _ = db.close().await;
    Ok(newest.map_or(
        LogPosition::default(),
        |(transaction_id, global_position)| LogPosition {
            transaction_id,
            global_position,
        },
    ))
}
