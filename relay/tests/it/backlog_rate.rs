//! A measurement, not a check (ignored by default): the `relay` binary over
//! a backlog seeded behind its checkpoint (as the bench seeds it), timed
//! from its first checkpoint advance to the end, beside its limit: a bare
//! publisher with confirms sending as many copies of one relayed message to
//! the same kind of queue (one quorum queue bound with `#`).
//!
//! `RELAY_BIN=target/release/relay RELAY_BACKLOG=100000 cargo test -p relay
//! --test it backlog_rate -- --ignored --nocapture` (`RELAY_BATCH_SIZE` and
//! `RELAY_WINDOW_BATCHES` pass through to the relay).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use infra::event_log::LogPosition;
use infra::testing::{request_metadata, seed_renamed_users, tap_group};
use sqlx::Connection;

use crate::support::Fixture;

/// Events per seeding transaction and per seeded user, as the bench seeds.
const CHUNK_EVENTS: usize = 100_000;
const EVENTS_PER_USER: usize = 100;
const BARE_BATCH: usize = 500;
const BARE_WINDOW: usize = 8;

async fn checkpoint(fixture: &Fixture) -> LogPosition {
    relay::RELAY_CHECKPOINT
        .load(&fixture.db.pool)
        .await
        .unwrap()
}

async fn seed(fixture: &Fixture, events: usize) -> LogPosition {
    let mut db = sqlx::PgConnection::connect(&fixture.db.url).await.unwrap();
    let metadata = request_metadata(None, "bench");
    let mut users_left = events.div_ceil(EVENTS_PER_USER);
    let mut last = LogPosition::default();
    while users_left > 0 {
        let users = users_left.min(CHUNK_EVENTS / EVENTS_PER_USER);
        let mut tx = db.begin().await.unwrap();
        last = seed_renamed_users(&mut tx, users, EVENTS_PER_USER - 1, &metadata)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        users_left -= users;
    }
    sqlx::query("ANALYZE events")
        .execute(&mut db)
        .await
        .unwrap();
    last
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn backlog_rate() {
    let events: usize = std::env::var("RELAY_BACKLOG")
        .map(|n| n.parse().expect("RELAY_BACKLOG is a number"))
        .unwrap_or(100_000);
    let binary = std::env::var("RELAY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_relay").into());
    let fixture = Fixture::new().await;
    let last = seed(&fixture, events).await;

    let since = Instant::now();
    // The relay's own settings, when given, pass through.
    let settings: Vec<(&'static str, String)> = ["RELAY_BATCH_SIZE", "RELAY_WINDOW_BATCHES"]
        .into_iter()
        .filter_map(|key| std::env::var(key).ok().map(|value| (key, value)))
        .collect();
    let _relay = fixture.spawn_relay_binary("relay", &binary, &settings);
    let mut first = None;
    let published = loop {
        let at = checkpoint(&fixture).await;
        if first.is_none() && at > LogPosition::default() {
            first = Some((Instant::now(), at));
        }
        if at >= last {
            break Instant::now();
        }
        assert!(
            since.elapsed() < Duration::from_secs(600),
            "stuck at {at:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (started, from) = first.unwrap();
    let counted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events \
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2)",
    )
    .bind(from.transaction_id)
    .bind(from.global_position)
    .fetch_one(&fixture.db.pool)
    .await
    .unwrap();
    let rate = counted as f64 / (published - started).as_secs_f64();
    eprintln!(
        "relay: {counted} events in {:.2} s: {rate:.0} events/s ({binary}; {:.2} s from start)",
        (published - started).as_secs_f64(),
        (published - since).as_secs_f64()
    );

    loop {
        let folded: Option<(i64, i64)> =
            sqlx::query_as("SELECT transaction_id, global_position FROM audit_chain_head")
                .fetch_optional(&fixture.db.pool)
                .await
                .unwrap();
        let folded = folded.map(|(transaction_id, global_position)| LogPosition {
            transaction_id,
            global_position,
        });
        if folded.is_some_and(|folded| folded >= last) {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(600),
            "the fold is stuck"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "signer: checked and folded the backlog {:.2} s from the start",
        since.elapsed().as_secs_f64()
    );

    if let Ok(keep) = std::env::var("RELAY_KEEP_LOG") {
        keep_newest_relay_log(&keep);
    }

    let sample = fixture
        .tapped_within(1, Duration::from_secs(5))
        .await
        .remove(0);
    fixture.purge_tap().await;
    let message = bus::Message::of(&sample).unwrap();
    let copies = vec![message; BARE_BATCH];
    let (_connection, _channel, publisher) = fixture.publisher_to_tap().await;
    let started = Instant::now();
    let mut in_flight = VecDeque::with_capacity(BARE_WINDOW);
    let mut left = counted as usize;
    while left > 0 || !in_flight.is_empty() {
        if left > 0 && in_flight.len() < BARE_WINDOW {
            let send = left.min(BARE_BATCH);
            in_flight.push_back(
                publisher
                    .send_messages(copies[..send].to_vec())
                    .await
                    .unwrap(),
            );
            left -= send;
            continue;
        }
        let oldest: bus::PendingBatch = in_flight.pop_front().unwrap();
        oldest.confirmed().await.unwrap();
    }
    let bare = counted as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "bare publisher ({} bytes a message, {} on {}): {bare:.0} events/s; relay/bare {:.2}",
        copies[0].body_len(),
        BARE_BATCH,
        tap_group().name,
        rate / bare
    );
}

/// Copies the newest relay log (removed when the relay is dropped) to `to`,
/// for the stage durations the relay logs at debug level.
fn keep_newest_relay_log(to: &str) {
    let newest = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("relay-relay-")
        })
        .max_by_key(|entry| entry.metadata().and_then(|m| m.modified()).ok())
        .expect("a relay log");
    std::fs::copy(newest.path(), to).unwrap();
}
