//! The verify-latency phase, last, on the whole store (the export's seed,
//! the relay's backlog and the run's own events): an unrelated caller's
//! `GET /v1/users/me` ([`CLIENTS`] clients, one request in flight each)
//! idle, then while [`CLIENTS`] auditors keep the background verifier's
//! full passes running back to back (each: `POST /v1/audit/verify`, then
//! `GET /v1/audit/verify` every [`POLL`] until the pass has started, and
//! again). The window lasts `--phase-secs` and at least until a pass that
//! started in it has completed; the answers tell which passes started and
//! completed in it, over how many events and how fast.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::{Connection, PgConnection};
use tokio::task::JoinSet;

use crate::cpu;
use crate::hot_paths::{actors, User};
use crate::profile::Actor;
use crate::run::Phase;
use crate::traffic::{self, drive, drive_until, Driven};

/// Callers of `GET /v1/users/me`, and auditors keeping passes running.
pub const CLIENTS: usize = 4;
/// How often each auditor polls `GET /v1/audit/verify`.
pub const POLL: Duration = Duration::from_millis(100);
/// AUDIT_VERIFY_INTERVAL_MS of the api restarted for the phase (default
/// 30,000): a requested pass starts within this.
pub const INTERVAL_MS: u64 = 100;
/// Longest wait for the standing verification to cover the store before
/// the idle window, and for a pass to complete after `--phase-secs`.
const LONGEST_WAIT: Duration = Duration::from_secs(600);

/// What `GET` and `POST /v1/audit/verify` answer (the fields used).
#[derive(Clone, Debug, Deserialize)]
struct Answer {
    ok: bool,
    pending: bool,
    events_checked: u64,
    first_broken: Option<serde_json::Value>,
    pass_started_at: Option<DateTime<Utc>>,
    pass_completed_at: Option<DateTime<Utc>>,
    verified_at: Option<DateTime<Utc>>,
    full_pass_requested: bool,
}

/// A full pass that started and completed within the window.
#[derive(Clone, Debug)]
pub struct Pass {
    pub started: DateTime<Utc>,
    /// `verified_at` of the first answer that had the pass completed.
    pub verified: DateTime<Utc>,
    pub events: u64,
}

impl Pass {
    pub fn took(&self) -> Duration {
        (self.verified - self.started).to_std().unwrap_or_default()
    }
}

pub struct VerifyLatency {
    pub clients: usize,
    /// count(*) of events before the idle window.
    pub store_events: u64,
    /// From the api's restart until the standing verification covered the store.
    pub caught_up: Duration,
    pub idle: Driven,
    pub idle_cpu: cpu::Usage,
    pub during: Driven,
    pub during_cpu: cpu::Usage,
    /// In the order they started.
    pub passes: Vec<Pass>,
    pub posts: usize,
    pub polls: usize,
}

impl VerifyLatency {
    /// p99 during the passes over p99 idle.
    pub fn ratio(&self) -> f64 {
        self.during.percentile_ms(99.0) / self.idle.percentile_ms(99.0)
    }

    /// Events over seconds of every pass in the window.
    pub fn pass_rate(&self) -> f64 {
        let events: u64 = self.passes.iter().map(|pass| pass.events).sum();
        let secs: f64 = self.passes.iter().map(|p| p.took().as_secs_f64()).sum();
        events as f64 / secs.max(f64::EPSILON)
    }
}

pub struct Setting<'a> {
    pub base_url: &'a str,
    pub db_url: &'a SecretString,
    /// The callers of `GET /v1/users/me`, with fresh tokens.
    pub users: &'a [User],
    /// An access token with audit:read.
    pub auditor: &'a str,
    pub duration: Duration,
    pub phase: &'a Phase,
    /// api and projector, for the CPU they use.
    pub pids: (u32, u32),
    /// When the api was started for the phase.
    pub restarted: Instant,
}

pub async fn measure(setting: &Setting<'_>) -> anyhow::Result<VerifyLatency> {
    let (phase, secs) = (setting.phase, setting.duration.as_secs_f64());
    let http = traffic::http_client()?;
    let base_url: Arc<str> = setting.base_url.into();
    let store_events = count_events(setting.db_url).await?;
    phase.set(format!(
        "waiting until GET /v1/audit/verify has a completed pass over all {store_events} events"
    ));
    loop {
        let answer = ask(&http, &base_url, setting.auditor, false).await?;
        if !answer.pending && answer.ok && answer.events_checked >= store_events {
            break;
        }
        anyhow::ensure!(
            answer.ok || answer.pending,
            "the standing verification says the log is broken: {:?}",
            answer.first_broken
        );
        anyhow::ensure!(
            setting.restarted.elapsed() < LONGEST_WAIT,
            "the standing verification covered {} of {store_events} events in {} s",
            answer.events_checked,
            LONGEST_WAIT.as_secs()
        );
        tokio::time::sleep(POLL).await;
    }
    let caught_up = setting.restarted.elapsed();

    phase.set(format!(
        "{} clients reading GET /v1/users/me for {secs} s, idle",
        setting.users.len()
    ));
    let before = cpu::sample(setting.pids.0, setting.pids.1);
    let idle = drive(
        actors(setting.base_url, setting.users)?,
        setting.duration,
        None,
        Actor::read_me,
    )
    .await?;
    let idle_cpu = cpu::usage(&before, &cpu::sample(setting.pids.0, setting.pids.1));

    phase.set(format!(
        "{n} clients reading GET /v1/users/me while {n} auditors keep full verification passes \
         running (POST /v1/audit/verify, GET every {} ms), for {secs} s and until a pass \
         started in the window has completed",
        POLL.as_millis(),
        n = setting.users.len()
    ));
    let window_start = Utc::now();
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let mut auditors = JoinSet::new();
    for _ in 0..CLIENTS {
        let (http, base_url, token) = (
            traffic::http_client()?,
            base_url.clone(),
            setting.auditor.to_owned(),
        );
        let (stop, answers) = (stop.clone(), answers.clone());
        auditors.spawn(async move {
            let mut polls = 0;
            let mut posts = 0;
            while !stop.load(Ordering::Relaxed) {
                posts += 1;
                let mut answer = ask(&http, &base_url, &token, true).await?;
                answers.lock().expect("answers").push(answer.clone());
                while answer.full_pass_requested && !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(POLL).await;
                    polls += 1;
                    answer = ask(&http, &base_url, &token, false).await?;
                    answers.lock().expect("answers").push(answer.clone());
                }
            }
            anyhow::Ok((posts, polls))
        });
    }
    let done = {
        let stop = stop.clone();
        move || stop.load(Ordering::Relaxed)
    };
    let before = cpu::sample(setting.pids.0, setting.pids.1);
    let readers = tokio::spawn(drive_until(
        actors(setting.base_url, setting.users)?,
        done,
        None,
        Actor::read_me,
    ));
    let started = Instant::now();
    let (mut posts, mut polls) = (0, 0);
    loop {
        tokio::time::sleep(POLL / 2).await;
        // Before the stop, only an error ends a task.
        if let Some(joined) = auditors.try_join_next() {
            stop.store(true, Ordering::Relaxed);
            joined.context("an auditor")??;
        }
        if readers.is_finished() {
            break;
        }
        let enough = started.elapsed() >= setting.duration
            && !passes(&answers.lock().expect("answers"), window_start, Utc::now())?.is_empty();
        if enough || started.elapsed() >= setting.duration + LONGEST_WAIT {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let window_end = Utc::now();
    let during = readers.await.context("the readers")??;
    let during_cpu = cpu::usage(&before, &cpu::sample(setting.pids.0, setting.pids.1));
    while let Some(joined) = auditors.join_next().await {
        let (posted, polled) = joined.context("an auditor")??;
        posts += posted;
        polls += polled;
    }
    let answers = std::mem::take(&mut *answers.lock().expect("answers"));
    let passes = passes(&answers, window_start, window_end)?;
    anyhow::ensure!(
        !passes.is_empty(),
        "no full pass started and completed within {:.1} s ({} answers)",
        (window_end - window_start).as_seconds_f64(),
        answers.len()
    );
    for pass in &passes {
        anyhow::ensure!(
            pass.events >= store_events,
            "the pass started at {} checked {} events; the store had {store_events}",
            pass.started,
            pass.events
        );
    }
    Ok(VerifyLatency {
        clients: setting.users.len(),
        store_events,
        caught_up,
        idle,
        idle_cpu,
        during,
        during_cpu,
        passes,
        posts,
        polls,
    })
}

/// `POST` (asks for a full pass, 202) or `GET /v1/audit/verify` (200).
async fn ask(
    http: &reqwest::Client,
    base_url: &str,
    token: &str,
    post: bool,
) -> anyhow::Result<Answer> {
    let url = format!("{base_url}/v1/audit/verify");
    let (request, expected) = if post {
        (http.post(&url), StatusCode::ACCEPTED)
    } else {
        (http.get(&url), StatusCode::OK)
    };
    let response = request
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("{url} (post: {post})"))?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(
        status == expected,
        "{url} (post: {post}) answered {status}: {text}"
    );
    serde_json::from_str(&text).with_context(|| format!("{url}: unexpected body {text}"))
}

/// The passes the answers saw start at or after `from` and complete by
/// `to`, each with the first answer that had it completed; Err if an
/// answer says the log is broken.
fn passes(answers: &[Answer], from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<Vec<Pass>> {
    let mut passes: Vec<Pass> = Vec::new();
    for answer in answers {
        anyhow::ensure!(
            answer.ok || answer.pending,
            "the standing verification says the log is broken: {:?}",
            answer.first_broken
        );
        let (Some(started), Some(_), Some(verified)) = (
            answer.pass_started_at,
            answer.pass_completed_at,
            answer.verified_at,
        ) else {
            continue;
        };
        if started < from || verified > to {
            continue;
        }
        match passes.iter_mut().find(|pass| pass.started == started) {
            Some(pass) if pass.verified <= verified => {}
            Some(pass) => {
                pass.verified = verified;
                pass.events = answer.events_checked;
            }
            None => passes.push(Pass {
                started,
                verified,
                events: answer.events_checked,
            }),
        }
    }
    passes.sort_by_key(|pass| pass.started);
    Ok(passes)
}

async fn count_events(db_url: &SecretString) -> anyhow::Result<u64> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut db)
        .await?;
    let _ = db.close().await;
    Ok(count as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(started: i64, completed: Option<i64>, verified: i64, events: u64) -> Answer {
        let at = |s: i64| DateTime::from_timestamp(s, 0);
        Answer {
            ok: completed.is_some(),
            pending: completed.is_none(),
            events_checked: events,
            first_broken: None,
            pass_started_at: at(started),
            pass_completed_at: completed.and_then(at),
            verified_at: at(verified),
            full_pass_requested: false,
        }
    }

    #[test]
    fn a_pass_counts_from_its_first_completed_answer_within_the_window() {
        let answers = [
            answer(5, Some(8), 8, 100),
            answer(10, None, 11, 40),
            answer(10, Some(14), 16, 130),
            answer(10, Some(14), 14, 120),
            answer(20, Some(31), 31, 120),
        ];
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let passes = passes(&answers, at(10), at(30)).unwrap();
        assert_eq!(passes.len(), 1);
        assert_eq!(
            (passes[0].events, passes[0].took()),
            (120, Duration::from_secs(4))
        );
    }

    #[test]
    fn a_broken_answer_fails() {
        let mut broken = answer(10, None, 11, 40);
        broken.pending = false;
        broken.first_broken = Some(serde_json::json!({ "reason": "hash_mismatch" }));
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        assert!(passes(&[broken], at(0), at(30)).is_err());
    }
}
