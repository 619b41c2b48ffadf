//! The relay keeps several batches in flight; the broker cut while they
//! are: its checkpoint never passes an event the broker has not confirmed,
//! and once the broker is back every event of the backlog reaches the queue
//! (again, for those sent and not confirmed before the cut). Likewise when
//! the relay is killed mid-pipeline and started again.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use infra::event_log::LogPosition;
use infra::testing::{eventually, request_metadata, seed_renamed_users, TcpProxy};
use sqlx::Connection;
use uuid::Uuid;

use crate::support::Fixture;

const USERS: usize = 300;
/// 100 events per user: a backlog of 30,000.
const RENAMES: usize = 99;

async fn checkpoint(fixture: &Fixture) -> LogPosition {
    relay::RELAY_CHECKPOINT
        .load(&fixture.db.pool)
        .await
        .unwrap()
}

/// The ids of the events up to `up_to` in publishing order.
async fn event_ids_up_to(fixture: &Fixture, up_to: LogPosition) -> Vec<Uuid> {
    sqlx::query_scalar(
        "SELECT event_id FROM events \
         WHERE (transaction_id, global_position) <= ($1::text::xid8, $2)",
    )
    .bind(up_to.transaction_id)
    .bind(up_to.global_position)
    .fetch_all(&fixture.db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_cut_mid_pipeline_loses_nothing_and_never_checkpoints_past_a_confirm() {
    let fixture = Fixture::new().await;
    let mut db = sqlx::PgConnection::connect(&fixture.db.url).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let last = seed_renamed_users(&mut tx, USERS, RENAMES, &request_metadata(None, "pipeline"))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let broker: SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let proxy = TcpProxy::start(broker).await;
    let _relay = fixture.spawn_relay_with(
        "relay",
        &[
            (
                "AMQP_URL",
                format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port()),
            ),
            ("RELAY_BATCH_SIZE", "100".into()),
            ("RELAY_WINDOW_BATCHES", "16".into()),
        ],
    );

    // Cut once publishing is under way, well before the end of the backlog.
    let deadline = Instant::now() + Duration::from_secs(30);
    while checkpoint(&fixture).await == LogPosition::default() {
        assert!(Instant::now() < deadline, "the relay never published");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    proxy.cut();
    // The relay notices, fails its batches in flight and keeps trying to
    // reconnect; its checkpoint stays where the confirms got to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_cut = checkpoint(&fixture).await;
    assert!(at_cut < last, "the cut came after the whole backlog");
    let before_restore = fixture.tapped_ids_until_quiet(Duration::from_secs(2)).await;
    assert_eq!(
        checkpoint(&fixture).await,
        at_cut,
        "the checkpoint moved without the broker"
    );
    let on_queue: BTreeSet<Uuid> = before_restore.iter().copied().collect();
    let checkpointed = event_ids_up_to(&fixture, at_cut).await;
    let missing = checkpointed
        .iter()
        .filter(|id| !on_queue.contains(id))
        .count();
    assert_eq!(
        missing,
        0,
        "the checkpoint passed events not on the queue ({} checkpointed, {} on the queue)",
        checkpointed.len(),
        on_queue.len()
    );

    proxy.restore().await;
    eventually(
        Duration::from_secs(120),
        "the checkpoint at the end of the backlog",
        || async { (checkpoint(&fixture).await >= last).then_some(()) },
    )
    .await;
    let after_restore = fixture.tapped_ids_until_quiet(Duration::from_secs(2)).await;
    let all = event_ids_up_to(&fixture, last).await;
    let mut delivered = on_queue;
    delivered.extend(after_restore.iter().copied());
    let lost: Vec<&Uuid> = all.iter().filter(|id| !delivered.contains(id)).collect();
    let deliveries = before_restore.len() + after_restore.len();
    eprintln!(
        "pipeline cut: {} events, {} checkpointed at the cut, {} on the queue then, \
         {deliveries} deliveries in all ({} duplicates), {} lost",
        all.len(),
        checkpointed.len(),
        before_restore.len(),
        deliveries - delivered.len(),
        lost.len()
    );
    assert_eq!(all.len(), USERS * (RENAMES + 1));
    assert!(lost.is_empty(), "lost: {:?}", &lost[..lost.len().min(10)]);
    assert_eq!(delivered.len(), all.len(), "only the backlog's events");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_killed_with_confirms_outstanding_loses_nothing_and_never_checkpoints_past_a_confirm(
) {
    let fixture = Fixture::new().await;
    let mut db = sqlx::PgConnection::connect(&fixture.db.url).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let last = seed_renamed_users(&mut tx, USERS, RENAMES, &request_metadata(None, "kill"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let settings = [
        ("RELAY_BATCH_SIZE", "100".to_owned()),
        ("RELAY_WINDOW_BATCHES", "16".to_owned()),
    ];
    let mut relay = fixture.spawn_relay_with("relay", &settings);

    // Killed while the queue holds more than its checkpoint covers: sent
    // past it, confirmed or not. The relay is frozen (SIGSTOP) before the
    // second look, so its checkpoint writer cannot catch up between that
    // look and the kill.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if ahead_of_its_checkpoint(&fixture).await {
            relay.pause();
            if ahead_of_its_checkpoint(&fixture).await {
                break;
            }
            relay.resume();
        }
        assert!(
            Instant::now() < deadline,
            "the relay never got ahead of its checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    relay.kill();
    let at_kill = checkpoint(&fixture).await;
    assert!(at_kill < last, "the kill came after the whole backlog");
    let before_restart = fixture.tapped_ids_until_quiet(Duration::from_secs(2)).await;
    let on_queue: BTreeSet<Uuid> = before_restart.iter().copied().collect();
    let checkpointed = event_ids_up_to(&fixture, at_kill).await;
    let missing = checkpointed
        .iter()
        .filter(|id| !on_queue.contains(id))
        .count();
    assert_eq!(
        missing,
        0,
        "the checkpoint passed events not on the queue ({} checkpointed, {} on the queue)",
        checkpointed.len(),
        on_queue.len()
    );
    assert!(
        on_queue.len() > checkpointed.len(),
        "nothing was sent past the checkpoint when the relay was killed"
    );

    let _restarted = fixture.spawn_relay_with("restarted", &settings);
    eventually(
        Duration::from_secs(120),
        "the checkpoint at the end of the backlog",
        || async { (checkpoint(&fixture).await >= last).then_some(()) },
    )
    .await;
    let after_restart = fixture.tapped_ids_until_quiet(Duration::from_secs(2)).await;
    let all = event_ids_up_to(&fixture, last).await;
    let mut delivered = on_queue;
    delivered.extend(after_restart.iter().copied());
    let lost: Vec<&Uuid> = all.iter().filter(|id| !delivered.contains(id)).collect();
    let deliveries = before_restart.len() + after_restart.len();
    eprintln!(
        "relay killed: {} events, {} checkpointed at the kill, {} on the queue then, \
         {deliveries} deliveries in all ({} duplicates), {} lost",
        all.len(),
        checkpointed.len(),
        before_restart.len(),
        deliveries - delivered.len(),
        lost.len()
    );
    assert_eq!(all.len(), USERS * (RENAMES + 1));
    assert!(lost.is_empty(), "lost: {:?}", &lost[..lost.len().min(10)]);
    assert_eq!(delivered.len(), all.len(), "only the backlog's events");
}

/// Whether the tap queue holds at least 200 events more than the relay's
/// checkpoint covers.
async fn ahead_of_its_checkpoint(fixture: &Fixture) -> bool {
    let at = checkpoint(fixture).await;
    let covered = event_ids_up_to(fixture, at).await.len();
    at > LogPosition::default() && fixture.tap_depth().await as usize > covered + 200
}
