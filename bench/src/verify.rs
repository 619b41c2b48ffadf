//! The verify phase, after the export phase on the same store: waits until
//! the relay has folded every event into the running hash and a signed
//! checkpoint covers them all, runs `api audit verify` once (wall time, peak
//! RSS), checks its report against the store, and hashes in this process, on
//! one thread, the bytes that verification must hash at least: the
//! machine's SHA-256 limit for the same work.

use std::fs::File;
use std::hint::black_box;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};

use crate::run::AbortOnDrop;
use crate::services::{log_tail, EXIT_POLL};

/// How often the verifier's VmRSS and VmHWM are read while it runs.
pub const RSS_EVERY: Duration = Duration::from_millis(10);
/// How often the chain head is polled while waiting for the fold.
const HEAD_POLL: Duration = Duration::from_millis(50);
/// What `api audit verify` prints (stdout and stderr), in the run's directory.
pub const LOG: &str = "audit-verify.log";
/// Bytes per event, besides its sealed text, that the event hash covers at
/// least (prefix, lengths, prev_hash, aggregate, sequence, type, version,
/// recorded_at), and that the running hash adds (the hash, position).
pub const OTHER_BYTES_PER_EVENT: u64 = 100;
/// The in-memory buffer hashed over and over.
const BUFFER: usize = 1 << 20;

/// The whole phase, for the report.
pub struct Verified {
    /// From the end of the export phase until `audit_chain_head` had every
    /// event and a checkpoint covered them all.
    pub head_wait: Duration,
    /// `audit_chain_head.event_count` then (= the store's events).
    pub folded: u64,
    /// Rows of `audit_checkpoints` (all signed by the run's key).
    pub checkpoints: u64,
    pub command: VerifyCommand,
    /// The store after the command: its events, and the bytes hashed.
    pub store: StoreBytes,
    /// SHA-256 in this process over [`StoreBytes::total`] bytes.
    pub sha: ShaRates,
}

/// `api audit verify --public-key <run>/audit-signing.pem.pub`, once.
pub struct VerifyCommand {
    /// Spawn -> reaped, as the bench saw it (polled every [`EXIT_POLL`]).
    pub wall: Duration,
    /// The last VmHWM read (its resident high-water mark), in KiB. Not
    /// ru_maxrss: Linux carries the forking process's high-water mark over
    /// exec into it, so it reports the bench's size.
    pub peak_kib: u64,
    /// The highest VmRSS read every [`RSS_EVERY`], in KiB, and how many reads.
    pub sampled_rss_kib: u64,
    pub samples: u64,
    /// CPU time of the child (ru_utime, ru_stime from wait4(2)).
    pub user: Duration,
    pub system: Duration,
    pub report: Report,
    pub log: PathBuf,
}

impl VerifyCommand {
    pub fn per_second(&self) -> f64 {
        self.report.events_checked as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }
}

/// The JSON the command prints.
#[derive(Debug, Deserialize)]
pub struct Report {
    pub ok: bool,
    pub events_checked: u64,
    pub checkpoints_checked: u64,
    pub first_broken: Option<serde_json::Value>,
}

/// What verification hashes at least, from the store.
#[derive(Clone, Debug)]
pub struct StoreBytes {
    pub events: u64,
    /// sum(octet_length(sealed::text)): each event hash covers its sealed text.
    pub sealed: u64,
    /// sum(octet_length(payload::text) + octet_length(metadata::text)): an
    /// approximation of salt + value over every string commitment.
    pub commitments: u64,
}

impl StoreBytes {
    pub fn other(&self) -> u64 {
        OTHER_BYTES_PER_EVENT * self.events
    }

    pub fn total(&self) -> u64 {
        self.sealed + self.other() + self.commitments
    }
}

/// SHA-256 (`sha2`, the verifier's crate) over the same number of bytes, in
/// memory, one thread.
#[derive(Clone, Debug)]
pub struct ShaRates {
    /// One stream (update() with 1 MiB slices): the bare hashing rate.
    pub stream: Duration,
    /// One message per event of the mean size (digest() each): adds the
    /// padding block and finalisation of every message.
    pub per_event: Duration,
    pub bytes: u64,
    pub events: u64,
}

impl ShaRates {
    pub fn megabytes_per_second(&self, took: Duration) -> f64 {
        self.bytes as f64 / 1e6 / took.as_secs_f64().max(f64::EPSILON)
    }

    pub fn events_per_second(&self, took: Duration) -> f64 {
        self.events as f64 / took.as_secs_f64().max(f64::EPSILON)
    }
}

/// The phase: the wait for the fold, the command, the store's bytes, the
/// in-memory rate.
pub async fn verify_phase(
    db_url: &SecretString,
    api_bin: &Path,
    env: &[(&'static str, String)],
    run_dir: &Path,
    public_key: &Path,
    phase: &crate::run::Phase,
) -> anyhow::Result<Verified> {
    phase.set(
        "waiting until audit_chain_head has every event and a signed checkpoint covers them all",
    );
    let started = Instant::now();
    let (folded, checkpoints) = wait_for_fold(db_url).await?;
    let head_wait = started.elapsed();
    eprintln!(
        "bench: the running hash covers all {folded} events ({checkpoints} checkpoints) after {:.2} s",
        head_wait.as_secs_f64()
    );

    phase.set(format!(
        "api audit verify --public-key {} (VmRSS every {} ms)",
        public_key.display(),
        RSS_EVERY.as_millis()
    ));
    let command = run_verify(api_bin, env, run_dir, public_key).await?;

    let report = &command.report;
    anyhow::ensure!(
        report.ok && report.first_broken.is_none(),
        "api audit verify says the log is broken: {:?}; see {}",
        report.first_broken,
        command.log.display()
    );
    phase.set("summing the bytes verification hashes (sealed text, payload and metadata)");
    let store = store_bytes(db_url).await?;
    anyhow::ensure!(
        report.events_checked == store.events && store.events == folded,
        "api audit verify checked {} events; the store has {} (the running hash {folded})",
        report.events_checked,
        store.events
    );
    let checkpoints_now = checkpoint_count(db_url).await?;
    anyhow::ensure!(
        report.checkpoints_checked == checkpoints_now,
        "api audit verify checked {} checkpoints; audit_checkpoints has {checkpoints_now}",
        report.checkpoints_checked
    );

    phase.set(format!(
        "SHA-256 over {:.1} MB in memory, one thread (sha2, twice: one stream, then one \
         message per event)",
        store.total() as f64 / 1e6
    ));
    let (bytes, events) = (store.total(), store.events);
    let sha = tokio::task::spawn_blocking(move || sha256_rates(bytes, events))
        .await
        .context("the SHA-256 measurement")?;
    Ok(Verified {
        head_wait,
        folded,
        checkpoints: checkpoints_now,
        command,
        store,
        sha,
    })
}

/// Polls `audit_chain_head` and the newest checkpoint until both count every
/// event in the store; returns that count and the checkpoints'.
async fn wait_for_fold(db_url: &SecretString) -> anyhow::Result<(u64, u64)> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    loop {
        let (head, signed): (i64, Option<i64>) = sqlx::query_as(
            "SELECT h.event_count, \
                    (SELECT event_count FROM audit_checkpoints \
                     ORDER BY transaction_id DESC, global_position DESC LIMIT 1) \
             FROM audit_chain_head h",
        )
        .fetch_one(&mut db)
        .await
        .context("read audit_chain_head")?;
        // The count of the store only once the head and the newest
        // checkpoint agree: it reads every row.
        if signed == Some(head) {
            let (events, checkpoints): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM audit_checkpoints)",
            )
            .fetch_one(&mut db)
            .await?;
            if events == head {
                let _ = db.close().await;
                return Ok((events as u64, checkpoints as u64));
            }
        }
        tokio::time::sleep(HEAD_POLL).await;
    }
}

async fn checkpoint_count(db_url: &SecretString) -> anyhow::Result<u64> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_checkpoints")
        .fetch_one(&mut db)
        .await?;
    let _ = db.close().await;
    Ok(count as u64)
}

async fn store_bytes(db_url: &SecretString) -> anyhow::Result<StoreBytes> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    let (events, sealed, commitments): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), \
                coalesce(sum(octet_length(sealed::text)), 0)::bigint, \
                coalesce(sum(octet_length(payload::text) + octet_length(metadata::text)), 0)::bigint \
         FROM events",
    )
    .fetch_one(&mut db)
    .await
    .context("sum the bytes of the events")?;
    let _ = db.close().await;
    Ok(StoreBytes {
        events: events as u64,
        sealed: sealed as u64,
        commitments: commitments as u64,
    })
}

/// A child reaped with wait4(2), for its rusage; killed and reaped if
/// dropped before it exits (a timeout or Ctrl-C).
struct Reaped {
    pid: libc::pid_t,
    exited: bool,
}

impl Reaped {
    /// Some((wait status, user and system CPU time)) once the child has exited.
    fn try_wait(&mut self) -> std::io::Result<Option<(libc::c_int, Duration, Duration)>> {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on a child this process spawned and has not reaped.
        let reaped = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut usage) };
        match reaped {
            0 => Ok(None),
            pid if pid == self.pid => {
                self.exited = true;
                let time = |t: libc::timeval| {
                    Duration::from_secs(t.tv_sec.max(0) as u64)
                        + Duration::from_micros(t.tv_usec.max(0) as u64)
                };
                Ok(Some((status, time(usage.ru_utime), time(usage.ru_stime))))
            }
            _ => Err(std::io::Error::last_os_error()),
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if !self.exited {
            let mut status = 0;
            // SAFETY: the child is ours and not reaped yet.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, &mut status, 0);
            }
        }
    }
}

/// VmRSS and VmHWM of `pid` in KiB (None once it has exited).
fn memory_kib(pid: libc::pid_t) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

async fn run_verify(
    api_bin: &Path,
    env: &[(&'static str, String)],
    run_dir: &Path,
    public_key: &Path,
) -> anyhow::Result<VerifyCommand> {
    let log = run_dir.join(LOG);
    let stdout = File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let stderr = stdout.try_clone()?;
    let started = Instant::now();
    let child = Command::new(api_bin)
        .args([
            "audit".as_ref(),
            "verify".as_ref(),
            "--public-key".as_ref(),
            public_key.as_os_str(),
        ])
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .with_context(|| format!("start {} audit verify", api_bin.display()))?;
    let mut reaped = Reaped {
        pid: libc::pid_t::try_from(child.id())?,
        exited: false,
    };
    // Reaped by wait4 below, not by the std handle.
    drop(child);
    let rss = Arc::new(AtomicU64::new(0));
    let hwm = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (rss, hwm, samples, pid) = (rss.clone(), hwm.clone(), samples.clone(), reaped.pid);
        AbortOnDrop(tokio::spawn(async move {
            let mut every = tokio::time::interval(RSS_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                if let Some((now, high)) = memory_kib(pid) {
                    rss.fetch_max(now, Ordering::Relaxed);
                    hwm.fetch_max(high, Ordering::Relaxed);
                    samples.fetch_add(1, Ordering::Relaxed);
                }
            }
        }))
    };
    let (status, user, system) = loop {
        if let Some(exited) = reaped.try_wait().context("wait4 api audit verify")? {
            break exited;
        }
        tokio::time::sleep(EXIT_POLL).await;
    };
    let wall = started.elapsed();
    drop(sampler);
    let output = std::fs::read_to_string(&log).with_context(|| format!("{}", log.display()))?;
    // Exit 1 with a report says the log is broken; the report tells where.
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let report = printed_report(&output).with_context(|| {
        format!(
            "api audit verify exited ({}) without a report; end of {}:\n{}",
            code.map_or_else(
                || format!("signal, status {status}"),
                |c| format!("code {c}")
            ),
            log.display(),
            log_tail(&log, 15)
        )
    })?;
    anyhow::ensure!(
        code == Some(0) || (code == Some(1) && !report.ok),
        "api audit verify exited with {code:?} (report ok: {}); see {}",
        report.ok,
        log.display()
    );
    Ok(VerifyCommand {
        wall,
        peak_kib: hwm.load(Ordering::Relaxed),
        sampled_rss_kib: rss.load(Ordering::Relaxed),
        samples: samples.load(Ordering::Relaxed),
        user,
        system,
        report,
        log,
    })
}

/// The pretty-printed report: from a line `{` to the next line `}` (the log
/// lines on the same stdout are JSON objects of one line each).
fn printed_report(output: &str) -> anyhow::Result<Report> {
    let lines: Vec<&str> = output.lines().collect();
    let start = lines
        .iter()
        .rposition(|line| *line == "{")
        .context("no line `{`")?;
    let end = start
        + lines[start..]
            .iter()
            .position(|line| *line == "}")
            .context("no line `}` after it")?;
    let text = lines[start..=end].join("\n");
    serde_json::from_str(&text).with_context(|| format!("not the report: {text}"))
}

/// SHA-256 over `bytes` bytes of a buffer in memory on this thread: as one
/// stream, then as `events` messages of the mean size.
fn sha256_rates(bytes: u64, events: u64) -> ShaRates {
    // Not all zeros, not that it matters to SHA-256.
    let buffer: Vec<u8> = (0..BUFFER).map(|i| (i * 131 % 251) as u8).collect();

    let started = Instant::now();
    let mut hasher = Sha256::new();
    let mut left = bytes;
    while left > 0 {
        let take = left.min(BUFFER as u64) as usize;
        hasher.update(&buffer[..take]);
        left -= take as u64;
    }
    black_box(hasher.finalize());
    let stream = started.elapsed();

    let mean = (bytes / events.max(1)).clamp(1, BUFFER as u64 / 2) as usize;
    let started = Instant::now();
    let mut offset = 0;
    for _ in 0..events {
        black_box(Sha256::digest(&buffer[offset..offset + mean]));
        offset = (offset + mean) % (BUFFER - mean);
    }
    let per_event = started.elapsed();
    ShaRates {
        stream,
        per_event,
        bytes,
        events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_found_among_log_lines() {
        let output = "{\"timestamp\":\"x\",\"level\":\"INFO\"}\n{\n  \"ok\": true,\n  \
                      \"events_checked\": 12,\n  \"checkpoints_checked\": 3,\n  \
                      \"first_broken\": null\n}\n";
        let report = printed_report(output).unwrap();
        assert!(report.ok);
        assert_eq!((report.events_checked, report.checkpoints_checked), (12, 3));
        assert!(report.first_broken.is_none());
    }

    #[test]
    fn a_broken_report_keeps_where() {
        let output = "{\n  \"ok\": false,\n  \"events_checked\": 5,\n  \
                      \"checkpoints_checked\": 0,\n  \"first_broken\": {\n    \
                      \"reason\": \"hash_mismatch\"\n  }\n}\n";
        let report = printed_report(output).unwrap();
        assert!(!report.ok);
        assert_eq!(report.first_broken.unwrap()["reason"], "hash_mismatch");
    }

    #[test]
    fn the_rates_cover_the_bytes() {
        let rates = sha256_rates(3 * BUFFER as u64 + 17, 1000);
        assert_eq!((rates.bytes, rates.events), (3 * BUFFER as u64 + 17, 1000));
        assert!(rates.stream > Duration::ZERO && rates.per_event > Duration::ZERO);
    }
}
