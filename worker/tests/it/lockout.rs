//! The lockout policy through the broker: real events, written by the
//! domain on the event store, published to the worker's queue.

use bus::Envelope;
use chrono::TimeDelta;
use domain::{SessionEvent, UserEvent};
use infra::testing::{eventually, handler_error};
use uuid::Uuid;

use crate::support::run;
use crate::support::{locked, now, Fixture, TIMEOUT};

#[tokio::test(flavor = "multi_thread")]
async fn the_nth_failure_locks_and_a_redelivered_failure_counts_once() {
    let fx = Fixture::new(|settings| settings.lockout_threshold = 3).await;
    let worker = run::start_in_process(fx.settings.clone()).await;
    let user = fx.register().await;
    let start = now();
    fx.fail_login(user, Some("10.1.0.1"), start - TimeDelta::seconds(2))
        .await;
    fx.fail_login(user, Some("10.1.0.1"), start - TimeDelta::seconds(1))
        .await;
    let first = fx.forward().await;
    // Every message twice: were duplicates counted, 4 >= 3 would lock.
    fx.broker.publish(&first).await;
    fx.drain().await;
    assert_eq!(fx.failures_stored().await, 2);
    assert!(fx.events_of(user, UserEvent::LOCKED).await.is_empty());

    fx.fail_login(user, Some("10.1.0.1"), start).await;
    let third = fx.forward().await;
    assert_eq!(third.len(), 1);
    let third = &third[0];
    let locks = eventually(TIMEOUT, "the user to be locked", || async {
        let locks = fx.events_of(user, UserEvent::LOCKED).await;
        (!locks.is_empty()).then_some(locks)
    })
    .await;
    assert_eq!(locks.len(), 1);
    let (until, failures) = locked(&locks[0]);
    assert_eq!(
        until,
        start + TimeDelta::seconds(300),
        "until = failed_at + duration"
    );
    assert_eq!(failures, 3);
    let metadata = &fx.metadata_of(user, UserEvent::LOCKED).await[0];
    assert_eq!(metadata["actor_id"], "worker");
    assert_eq!(metadata["causation_id"], third.event_id.to_string());
    assert_eq!(
        metadata["correlation_id"].as_str(),
        third.metadata.correlation_id.as_deref()
    );

    // The third failure again (a redelivery), and the lock itself: nothing new.
    fx.broker.publish(std::slice::from_ref(third)).await;
    fx.forward().await;
    fx.drain().await;
    assert_eq!(fx.events_of(user, UserEvent::LOCKED).await.len(), 1);
    assert_eq!(fx.failures_stored().await, 3);

    assert!(get(worker.port, "/health/ready")
        .await
        .contains("\"status\":\"ok\""));
    let metrics = get(worker.port, "/metrics").await;
    for name in [
        "worker_login_failures_recorded_total",
        "worker_users_locked_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_revokes_the_users_active_sessions() {
    let fx = Fixture::new(|settings| settings.lockout_threshold = 3).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    let user = fx.register().await;
    let other = fx.register().await;
    let start = now();
    let hour = TimeDelta::hours(1);
    let earlier = start - TimeDelta::seconds(10);
    let sessions = [
        fx.start_session(user, earlier, start + hour, 3600).await,
        fx.start_session(user, earlier, start + hour, 3600).await,
    ];
    let others = fx.start_session(other, earlier, start + hour, 3600).await;
    for second in 0..3 {
        fx.fail_login(user, None, start + TimeDelta::milliseconds(second))
            .await;
    }
    fx.forward().await;

    for session in sessions {
        let revoked = eventually(TIMEOUT, "the session to be revoked", || async {
            let revoked = fx.events_of(session, SessionEvent::REVOKED).await;
            (!revoked.is_empty()).then_some(revoked)
        })
        .await;
        assert_eq!(revoked.len(), 1);
        assert_eq!(
            revoked[0][SessionEvent::REVOKED.variant()]["reason"],
            "user_locked"
        );
        let metadata = &fx.metadata_of(session, SessionEvent::REVOKED).await[0];
        assert_eq!(metadata["actor_id"], "worker");
    }
    assert_eq!(fx.events_of(user, UserEvent::LOCKED).await.len(), 1);

    // The lock reaches the worker too (it revokes again: nothing is left).
    fx.forward().await;
    fx.drain().await;
    for session in sessions {
        assert_eq!(fx.events_of(session, SessionEvent::REVOKED).await.len(), 1);
    }
    assert!(fx.events_of(others, SessionEvent::REVOKED).await.is_empty());
    assert!(fx.events_of(other, UserEvent::LOCKED).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_from_one_address_only_count_per_user() {
    // The api counts and blocks addresses; the worker keeps the address of
    // each failure for forensics and never blocks one.
    let fx = Fixture::new(|settings| settings.lockout_threshold = 2).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    let attacker = "203.0.113.7";
    let start = now();
    let mut users = Vec::new();
    for index in 0..25 {
        let user = fx.register().await;
        fx.fail_login(user, Some(attacker), start + TimeDelta::milliseconds(index))
            .await;
        users.push(user);
    }
    fx.forward().await;
    fx.drain().await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM login_failures WHERE ip = $1")
        .bind(attacker)
        .fetch_one(fx.pool())
        .await
        .unwrap();
    assert_eq!(stored, 25);
    let blocks: i64 = sqlx::query_scalar("SELECT count(*) FROM login_ip_blocks")
        .fetch_one(fx.pool())
        .await
        .unwrap();
    assert_eq!(blocks, 0, "the worker blocks no address");
    for user in users {
        assert!(fx.events_of(user, UserEvent::LOCKED).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successful_login_restarts_the_count() {
    let fx = Fixture::new(|settings| settings.lockout_threshold = 3).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    let user = fx.register().await;
    let start = now();
    let at = |seconds| start + TimeDelta::seconds(seconds);
    fx.fail_login(user, None, at(-5)).await;
    fx.fail_login(user, None, at(-4)).await;
    fx.start_session(user, at(-3), at(3600), 3600).await;
    fx.fail_login(user, None, at(-2)).await;
    fx.fail_login(user, None, at(-1)).await;
    fx.forward().await;
    fx.drain().await;
    assert_eq!(fx.failures_stored().await, 4);
    assert!(
        fx.events_of(user, UserEvent::LOCKED).await.is_empty(),
        "two failures since the login"
    );

    fx.fail_login(user, None, at(0)).await;
    fx.forward().await;
    let locks = eventually(TIMEOUT, "the user to be locked", || async {
        let locks = fx.events_of(user, UserEvent::LOCKED).await;
        (!locks.is_empty()).then_some(locks)
    })
    .await;
    assert_eq!(locked(&locks[0]), (at(300), 3));
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_outside_the_window_do_not_count() {
    let fx = Fixture::new(|settings| {
        settings.lockout_threshold = 3;
        settings.lockout_window_seconds = 60;
    })
    .await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    let user = fx.register().await;
    let start = now();
    fx.fail_login(user, None, start - TimeDelta::seconds(61))
        .await;
    fx.fail_login(user, None, start - TimeDelta::seconds(30))
        .await;
    fx.fail_login(user, None, start).await;
    fx.forward().await;
    fx.drain().await;
    assert!(fx.events_of(user, UserEvent::LOCKED).await.is_empty());
    fx.fail_login(user, None, start + TimeDelta::seconds(1))
        .await;
    fx.forward().await;
    fx.drain().await;
    assert_eq!(fx.events_of(user, UserEvent::LOCKED).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undecodable_failure_is_dead_lettered_at_once_and_the_others_count() {
    let fx = Fixture::new(|settings| settings.lockout_threshold = 3).await;
    let user = fx.register().await;
    fx.fail_login(user, None, now()).await;
    let failure = fx
        .forward()
        .await
        .into_iter()
        .find(|event| event.event_type == UserEvent::LOGIN_FAILED.name())
        .expect("the failure");
    let poison = Envelope {
        event_id: Uuid::new_v4(),
        payload: serde_json::json!({ "Bogus": {} }),
        ..failure.clone()
    };
    // Queued before the worker starts: one batch with the valid failure.
    fx.broker.publish(std::slice::from_ref(&poison)).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;

    let dead = eventually(TIMEOUT, "the poison to be dead-lettered", || {
        fx.broker.take_dead_letter()
    })
    .await;
    let dead_event = Envelope::from_json(&dead.delivery.data).expect("an envelope");
    assert_eq!(dead_event.event_id, poison.event_id);
    let headers = dead
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    let headers = headers.inner();
    assert!(
        !headers.contains_key("x-death"),
        "dead-lettered by the worker, not by the delivery limit"
    );
    let reason = handler_error(&dead).expect("the worker's reason");
    assert!(reason.contains("does not decode"), "{reason}");

    fx.drain().await;
    assert_eq!(fx.failures_stored().await, 1, "the valid failure counted");
    assert!(fx.broker.take_dead_letter().await.is_none());
}

/// A page of the worker's health server (status 200 required).
async fn get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the worker");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_sharing_the_queue_lock_each_user_once() {
    let fx = Fixture::new(|settings| {
        settings.lockout_threshold = 4;
        settings.prefetch = 2;
        settings.max_batch = 2;
    })
    .await;
    let mut users = Vec::new();
    for _ in 0..10 {
        users.push(fx.register().await);
    }
    let start = now();
    for round in 0..4 {
        for user in &users {
            fx.fail_login(*user, None, start + TimeDelta::milliseconds(round))
                .await;
        }
    }
    // Competing consumers: each user's failures are spread over both.
    let _first = run::start_in_process(fx.settings.clone()).await;
    let _second = run::start_in_process(fx.settings.clone()).await;
    fx.forward().await;
    for user in &users {
        eventually(TIMEOUT, "every user to be locked", || async {
            (!fx.events_of(*user, UserEvent::LOCKED).await.is_empty()).then_some(())
        })
        .await;
    }
    fx.forward().await;
    fx.drain().await;
    assert_eq!(fx.failures_stored().await, 40);
    for user in &users {
        let locks = fx.events_of(*user, UserEvent::LOCKED).await;
        assert_eq!(locks.len(), 1, "user {user} locked once");
        assert_eq!(
            locked(&locks[0]),
            (
                start + TimeDelta::milliseconds(3) + TimeDelta::seconds(300),
                4
            )
        );
    }
}

/// Failures of one user can be judged out of the order they happened in
/// (two workers share the queue, a batch is redelivered after a kill): the
/// user is locked all the same, once, from the failure that completes the
/// window.
#[tokio::test(flavor = "multi_thread")]
async fn failures_judged_out_of_order_still_lock_once() {
    let fx = Fixture::new(|settings| settings.lockout_threshold = 3).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    let user = fx.register().await;
    let start = now();
    // The newest failure is judged first, the oldest next, the middle one last.
    for offset in [0, -2, -1] {
        fx.fail_login(user, None, start + TimeDelta::seconds(offset))
            .await;
        fx.forward().await;
        fx.drain().await;
    }
    let locks = fx.events_of(user, UserEvent::LOCKED).await;
    assert_eq!(locks.len(), 1, "locked once");
    assert_eq!(
        locked(&locks[0]),
        (start + TimeDelta::seconds(300), 3),
        "from the newest failure, which completes the window"
    );
}
