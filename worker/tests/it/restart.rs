//! The real binary killed with SIGKILL in the middle of the stream, with a
//! batch transaction open and deliveries unacked, then started again.

use chrono::TimeDelta;
use domain::UserEvent;
use infra::testing::{eventually, lock_waiters};

use crate::support::run;
use crate::support::{now, Fixture, TIMEOUT};

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_restarts_and_counts_every_failure_once() {
    let fx = Fixture::new(|settings| {
        settings.lockout_threshold = 5;
        settings.max_batch = 8;
        settings.prefetch = 16;
    })
    .await;
    let mut users = Vec::new();
    for _ in 0..24 {
        users.push(fx.register().await);
    }
    // Five failures per user, interleaved: each user is locked by its fifth.
    let start = now();
    for round in 0..5 {
        for user in &users {
            let at = start + TimeDelta::milliseconds(round);
            fx.fail_login(*user, Some("192.0.2.1"), at).await;
        }
    }
    let events = fx.forward().await;
    let failures: Vec<_> = events
        .iter()
        .filter(|event| event.event_type == UserEvent::LOGIN_FAILED.name())
        .collect();
    assert_eq!(failures.len(), 120);

    // An uncommitted row of a failure half-way through holds the worker's
    // insert of it, so the worker is certainly mid-stream when killed.
    let held = failures[failures.len() / 2];
    let mut barrier = fx.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO login_failures (event_id, user_id, ip, failed_at) \
         VALUES ($1, $2::text::uuid, NULL, now())",
    )
    .bind(held.event_id)
    .bind(&held.aggregate_id)
    .execute(&mut *barrier)
    .await
    .unwrap();

    let mut worker = run::spawn_binary(&fx.settings, 1);
    eventually(TIMEOUT, "the worker to be held mid-stream", || async {
        let waiting = lock_waiters(fx.pool()).await;
        let stored = fx.failures_stored().await;
        (waiting > 0 && stored > 0).then_some(())
    })
    .await;
    assert!(worker.is_running());
    worker.kill();
    barrier.rollback().await.unwrap();
    let stored = fx.failures_stored().await;
    assert!(0 < stored && stored < 120, "{stored} of 120 stored");

    let mut restarted = run::spawn_binary(&fx.settings, 2);
    eventually(TIMEOUT, "every failure to be stored", || async {
        (fx.failures_stored().await == 120).then_some(())
    })
    .await;
    fx.drain().await;
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT event_id) FROM login_failures")
        .fetch_one(fx.pool())
        .await
        .unwrap();
    assert_eq!(distinct, 120);
    let stored_ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT event_id FROM login_failures ORDER BY event_id")
            .fetch_all(fx.pool())
            .await
            .unwrap();
    let mut published: Vec<uuid::Uuid> = failures.iter().map(|event| event.event_id).collect();
    published.sort();
    assert_eq!(stored_ids, published, "exactly the published failures");
    for user in &users {
        let locks = fx.events_of(*user, UserEvent::LOCKED).await;
        assert_eq!(locks.len(), 1, "user {user} locked once");
    }
    restarted.terminate();
}
