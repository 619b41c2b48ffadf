//! Session expiry: sessions past a deadline in `sessions_view` (written here
//! as the projector would) get exactly one `session.expired`.

use std::time::Duration;

use crate::support::run;
use crate::support::{now, Fixture, TIMEOUT};
use chrono::TimeDelta;
use domain::SessionEvent;
use infra::testing::eventually;
use uuid::Uuid;
use worker::expiry::Expiry;

#[tokio::test(flavor = "multi_thread")]
async fn sessions_past_their_idle_or_absolute_deadline_expire_once() {
    let fx = Fixture::new(|_| {}).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    let user = fx.register().await;
    let start = now();
    let hour = TimeDelta::hours(1);
    // Idle for longer than its one-second timeout in about a second.
    let idle = fx.start_session(user, start, start + hour, 1).await;
    fx.project_session(idle, user, start, start + hour, 1).await;
    // Past its absolute deadline already.
    let earlier = start - TimeDelta::seconds(10);
    let absolute = fx
        .start_session(user, earlier, start - TimeDelta::seconds(1), 3600)
        .await;
    fx.project_session(absolute, user, earlier, start - TimeDelta::seconds(1), 3600)
        .await;
    // Nowhere near a deadline.
    let fresh = fx.start_session(user, start, start + hour, 3600).await;
    fx.project_session(fresh, user, start, start + hour, 3600)
        .await;

    for (session, reason) in [(idle, "idle"), (absolute, "absolute")] {
        let expired = eventually(TIMEOUT, "the session to expire", || async {
            let expired = fx.events_of(session, SessionEvent::EXPIRED).await;
            (!expired.is_empty()).then_some(expired)
        })
        .await;
        assert_eq!(
            expired[0][SessionEvent::EXPIRED.variant()]["reason"],
            reason
        );
        let metadata = &fx.metadata_of(session, SessionEvent::EXPIRED).await[0];
        assert_eq!(metadata["actor_id"], "worker");
    }
    // The view still says active (no projector here): the loop keeps
    // nominating them, and the aggregate writes nothing more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fx.events_of(idle, SessionEvent::EXPIRED).await.len(), 1);
    assert_eq!(fx.events_of(absolute, SessionEvent::EXPIRED).await.len(), 1);
    assert!(fx.events_of(fresh, SessionEvent::EXPIRED).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_expiry_loops_write_one_expiry_per_session() {
    let fx = Fixture::new(|_| {}).await;
    let user = fx.register().await;
    let start = now();
    let past = start - TimeDelta::seconds(1);
    let earlier = start - TimeDelta::seconds(10);
    let mut sessions = Vec::new();
    for _ in 0..20 {
        let session = fx.start_session(user, earlier, past, 3600).await;
        fx.project_session(session, user, earlier, past, 3600).await;
        sessions.push(session);
    }
    // Two loops (think: two worker processes) scanning the same view at once.
    let scans = futures_util::future::join_all((0..2).map(|_| {
        let mut expiry = Expiry::new(fx.pool().clone(), 500);
        async move { expiry.scan().await.expect("scan") }
    }))
    .await;
    assert!(scans.iter().all(|scan| scan.due == 20), "{scans:?}");
    assert_eq!(scans.iter().map(|scan| scan.expired).sum::<usize>(), 20);
    for session in &sessions {
        assert_eq!(fx.events_of(*session, SessionEvent::EXPIRED).await.len(), 1);
    }
    // And two running workers on top: still one each.
    let _first = run::start_in_process(fx.settings.clone()).await;
    let _second = run::start_in_process(fx.settings.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(SessionEvent::EXPIRED.name())
        .fetch_one(fx.pool())
        .await
        .unwrap();
    assert_eq!(total, 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_view_is_not_trusted() {
    let fx = Fixture::new(|_| {}).await;
    let user = fx.register().await;
    let start = now();
    let session = fx
        .start_session(user, start, start + TimeDelta::hours(1), 3600)
        .await;
    // The view claims the deadline passed; the aggregate knows better.
    let past = start - TimeDelta::seconds(1);
    fx.project_session(session, user, start - TimeDelta::seconds(5), past, 3600)
        .await;
    let unknown = Uuid::now_v7();
    fx.project_session(unknown, user, start - TimeDelta::seconds(5), past, 3600)
        .await;
    let mut expiry = Expiry::new(fx.pool().clone(), 500);
    let scan = expiry.scan().await.expect("scan");
    assert_eq!((scan.due, scan.expired), (2, 0));
    assert!(fx
        .events_of(session, SessionEvent::EXPIRED)
        .await
        .is_empty());
    // Handled ones are left out of the next scans for a while.
    assert_eq!(expiry.scan().await.expect("scan").due, 0);
}
