//! The real binary killed with SIGKILL in the middle of the stream, with a
//! batch transaction open and deliveries unacked, then started again.

use crate::support::fold::wait_for_fold;
use crate::support::run;
use crate::support::view::{checkpoint, view_count, wait_for_checkpoint};
use crate::support::writer::Writer;
use crate::support::{Fixture, Relay, TIMEOUT};
use infra::event_log::LogPosition;
use infra::testing::{eventually, lock_waiters};
use projector::views::USERS_VIEW;
use sqlx::PgPool;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_projector_restarts_without_losing_or_duplicating_anything() {
    let fx = Fixture::new(|settings| settings.max_batch = 32).await;
    let writer = Writer::new(fx.pool());
    // Two waves, so that registrations are spread over the whole log.
    let mut users = Vec::new();
    for _ in 0..2 {
        let mut wave = writer.register(160).await;
        writer.advance(&mut wave, |position| position % 4).await;
        users.extend(wave);
    }
    let events = Relay::default().forward(fx.pool(), &fx.broker).await;
    let total = i64::try_from(users.len()).unwrap();

    // A registration half-way through the stream. An uncommitted row of that
    // user holds the projector's insert, so it is certainly mid-stream when
    // killed: earlier batches committed, one transaction open, the rest of
    // the queue delivered or waiting.
    let held = events[events.len() / 2..]
        .iter()
        .find(|event| event.sequence == 1)
        .expect("a registration in the second half");
    let held_id = Uuid::parse_str(&held.aggregate_id).unwrap();
    let mut barrier = fx.pool().begin().await.unwrap();
    sqlx::query(&format!(
        "INSERT INTO {USERS_VIEW} (id, email, email_key, display_name, status, registered_at, \
           updated_at, sequence, global_position) \
         VALUES ($1, 'held@example.com', 'held@example.com', 'Held', 'active', now(), now(), 0, 0)",
    ))
    .bind(held_id)
    .execute(&mut *barrier)
    .await
    .unwrap();

    let mut projector = run::spawn_binary(&fx.settings, 1);
    eventually(TIMEOUT, "the projector to be held mid-stream", || {
        held_mid_stream(fx.pool())
    })
    .await;
    assert!(projector.is_running());
    projector.kill();
    barrier.rollback().await.unwrap();

    let applied = view_count(fx.pool()).await;
    assert!(
        0 < applied && applied < total,
        "{applied} of {total} users applied"
    );
    let last = LogPosition::of(events.last().unwrap());
    assert!(checkpoint(fx.pool()).await < last);

    let mut restarted = run::spawn_binary(&fx.settings, 2);
    let rows = wait_for_fold(fx.pool()).await.users;
    assert_eq!(rows.len(), users.len(), "exactly one row per user");
    let mut ids: Vec<Uuid> = users.iter().map(|user| user.id).collect();
    ids.sort();
    assert_eq!(rows.iter().map(|row| row.id).collect::<Vec<_>>(), ids);
    wait_for_checkpoint(fx.pool(), last).await;
    assert!(restarted.is_running());
    restarted.terminate();
    fx.broker.assert_all_acked().await;
}

/// Some users applied, and the projector waiting for the barrier's lock.
async fn held_mid_stream(pool: &PgPool) -> Option<()> {
    let held = lock_waiters(pool).await > 0 && view_count(pool).await > 0;
    held.then_some(())
}
