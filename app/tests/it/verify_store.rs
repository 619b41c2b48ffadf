//! `verify_store` over a seeded store with signed checkpoints: an untouched
//! store verifies, a change is caught at its event, and (ignored, run by
//! hand) how many events it verifies per second.
//!
//! The rate: `VERIFY_RATE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db>
//! cargo test --release -p app --test it verify_rate -- --ignored --nocapture`
//! verifies that database's events (signing checkpoints of them with a test
//! key first if it has none); without the variable, a fresh database of
//! `VERIFY_RATE_EVENTS` (200,000) seeded events.

use std::time::{Duration, Instant};

use app::integrity::{verify_store, Reason, VerifyReport};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use ed25519_dalek::SigningKey;
use infra::event_log::{hashes_between, LogPosition};
use infra::integrity::{key_id, running_hash, Checkpoint, PublicKeys, CHECKPOINT_COLUMNS};
use infra::testing::{request_metadata, seed_renamed_users, TestDatabase};
use secrecy::SecretString;
use sqlx::PgPool;

/// Events folded per signed checkpoint.
const CHECKPOINT_EVERY: usize = 10_000;
/// Hashes read per query while signing.
const SIGN_PAGE: i64 = 10_000;
/// Verifications timed; the fastest counts.
const RATE_RUNS: usize = 3;
/// The unit of a process's CPU times in `/proc/<pid>/stat` (Linux's USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

fn test_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn public_keys() -> PublicKeys {
    let mut keys = PublicKeys::default();
    keys.insert(test_key().verifying_key());
    keys
}

/// Folds every event in publishing order and signs a checkpoint every
/// `every` events and at the last, as the relay would; returns how many.
async fn sign_checkpoints(pool: &PgPool, every: usize) -> usize {
    let public = test_key().verifying_key();
    sqlx::query(
        "INSERT INTO audit_signing_keys (key_id, public_key) VALUES ($1, $2) \
         ON CONFLICT (key_id) DO NOTHING",
    )
    .bind(key_id(&public))
    .bind(STANDARD.encode(public.as_bytes()))
    .execute(pool)
    .await
    .unwrap();
    let (mut running, mut count, mut signed) = (String::new(), 0_usize, 0);
    let mut after = LogPosition::default();
    let end = LogPosition {
        transaction_id: i64::MAX,
        global_position: i64::MAX,
    };
    loop {
        let page = hashes_between(pool, after, end, SIGN_PAGE).await.unwrap();
        let read = page.len() as i64;
        for (position, hash) in page {
            running = running_hash(&running, &hash, position);
            count += 1;
            after = position;
            if count % every == 0 {
                insert_checkpoint(pool, after, &running, count).await;
                signed += 1;
            }
        }
        if read < SIGN_PAGE {
            break;
        }
    }
    if count % every != 0 {
        insert_checkpoint(pool, after, &running, count).await;
        signed += 1;
    }
    signed
}

async fn insert_checkpoint(pool: &PgPool, at: LogPosition, running: &str, count: usize) {
    let checkpoint = Checkpoint::sign(
        &test_key(),
        (at.transaction_id, at.global_position),
        running.to_owned(),
        count as i64,
        Utc::now(),
    );
    sqlx::query(&format!(
        "INSERT INTO audit_checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(checkpoint.transaction_id)
    .bind(checkpoint.global_position)
    .bind(&checkpoint.running_hash)
    .bind(checkpoint.event_count)
    .bind(checkpoint.created_at)
    .bind(&checkpoint.key_id)
    .bind(&checkpoint.signature)
    .execute(pool)
    .await
    .unwrap();
}

async fn seeded(users: usize, renames: usize) -> TestDatabase {
    let db = TestDatabase::create().await;
    let mut tx = db.pool.begin().await.unwrap();
    let metadata = request_metadata(None, "Mozilla/5.0 (X11; «ünïcode»)");
    seed_renamed_users(&mut tx, users, renames, &metadata)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    db
}

async fn verified(pool: &PgPool) -> VerifyReport {
    verify_store(pool, Some(public_keys()), &[]).await.unwrap()
}

#[tokio::test]
async fn a_seeded_store_verifies_across_pages_with_every_checkpoint() {
    // More than two pages of 1000, streams crossing page boundaries.
    let db = seeded(700, 2).await;
    let signed = sign_checkpoints(&db.pool, 500).await;
    let report = verified(&db.pool).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events_checked, 2100);
    assert_eq!(report.checkpoints_checked, signed as u64);
    assert_eq!(report.events_proven, 2100);
    assert_eq!(report.unproven_tail.map(|tail| tail.events), Some(0));
}

#[tokio::test]
async fn a_change_in_the_second_page_is_caught_at_its_event() {
    let db = seeded(700, 2).await;
    sign_checkpoints(&db.pool, 500).await;
    let (user,): (String,) = sqlx::query_as(
        "SELECT aggregate_id FROM events ORDER BY aggregate_type, aggregate_id, sequence \
         OFFSET 1500 LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE events SET metadata = jsonb_set(metadata::jsonb, '{user_agent}', '\"curl\"')::json \
         WHERE aggregate_id = $1 AND sequence = 2",
    )
    .bind(&user)
    .execute(&db.pool)
    .await
    .unwrap();
    let report = verified(&db.pool).await;
    let broken = report.first_broken.expect("the change is caught");
    assert_eq!(
        (broken.aggregate_id.as_deref(), broken.sequence),
        (Some(user.as_str()), Some(2)),
        "{broken:?}"
    );
    assert_eq!(
        broken.detail.as_deref(),
        Some("/metadata/user_agent: does not match its commitment")
    );
}

#[tokio::test]
async fn a_stream_cut_short_is_a_broken_link_before_any_checkpoint() {
    let db = seeded(10, 2).await;
    sign_checkpoints(&db.pool, 4).await;
    sqlx::query(
        "DELETE FROM events WHERE aggregate_id = \
         (SELECT min(aggregate_id) FROM events) AND sequence = 2",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let report = verified(&db.pool).await;
    let broken = report.first_broken.expect("the gap is caught");
    assert_eq!(
        (broken.reason, broken.sequence),
        (Reason::BrokenLink, Some(3)),
        "{broken:?}"
    );
}

#[tokio::test]
#[ignore = "a measurement: run by hand (see the module's comment)"]
async fn verify_rate() {
    let fresh;
    let pool = match std::env::var("VERIFY_RATE_DATABASE_URL") {
        Ok(url) => infra::db::connect(&SecretString::from(url), 2)
            .await
            .unwrap(),
        Err(_) => {
            let events: usize = std::env::var("VERIFY_RATE_EVENTS")
                .map_or(200_000, |events| events.parse().unwrap());
            fresh = seeded(events / 10, 9).await;
            infra::db::connect(&SecretString::from(fresh.url.clone()), 2)
                .await
                .unwrap()
        }
    };
    let checkpoints: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_checkpoints")
        .fetch_one(&pool)
        .await
        .unwrap();
    if checkpoints == 0 {
        let signed = sign_checkpoints(&pool, CHECKPOINT_EVERY).await;
        eprintln!("signed {signed} checkpoints");
    }
    let mut fastest = Duration::MAX;
    for _ in 0..RATE_RUNS {
        let before = backend_pids(&pool).await;
        let (cpu, backend_cpu) = (cpu_seconds("self"), backends_cpu(&before));
        let started = Instant::now();
        let report = verified(&pool).await;
        let took = started.elapsed();
        let cpu = cpu_seconds("self") - cpu;
        // A connection the pool opened during the run started from nothing.
        let backends = backend_pids(&pool).await;
        let backend_cpu = backends_cpu(&backends) - backend_cpu;
        assert!(report.ok, "{report:?}");
        let events = report.events_checked as f64;
        eprintln!(
            "verified {} events, {} checkpoints in {:.3} s: {:.0} events/s; CPU per event: \
             verifier {:.2} us, PostgreSQL {:.2} us ({} backends)",
            report.events_checked,
            report.checkpoints_checked,
            took.as_secs_f64(),
            events / took.as_secs_f64(),
            cpu * 1e6 / events,
            backend_cpu * 1e6 / events,
            backends.len()
        );
        fastest = fastest.min(took);
    }
    eprintln!(
        "fastest: {:.3} s; peak resident memory of the whole test: {} kB",
        fastest.as_secs_f64(),
        peak_resident_kib()
    );
}

/// VmHWM of this process, from `/proc/self/status`.
fn peak_resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The server processes of this database's connections (the pool's).
async fn backend_pids(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        .fetch_all(pool)
        .await
        .unwrap()
}

fn backends_cpu(pids: &[i32]) -> f64 {
    pids.iter().map(|pid| cpu_seconds(&pid.to_string())).sum()
}

/// User and system CPU time of a process so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // Fields 14 and 15 of the line; the first after the name is field 3.
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| field.parse::<u64>().unwrap_or(0))
        .sum();
    ticks as f64 / TICKS_PER_SECOND
}
