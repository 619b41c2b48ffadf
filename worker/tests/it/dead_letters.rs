//! `worker dead-letters list|replay|purge` on the lockout queue: an event
//! the worker can never decode is dead-lettered at once with its reason;
//! listing leaves it in place; it can be replayed and purged by id.

use bus::{Envelope, EventMetadata};
use chrono::Utc;
use domain::UserEvent;
use infra::testing::{eventually, run_cli, succeeded};
use uuid::Uuid;

use crate::support::{run, Fixture, TIMEOUT};

const WORKER: &str = env!("CARGO_BIN_EXE_worker");

fn undecodable_login_failure() -> Envelope {
    Envelope {
        event_id: Uuid::new_v4(),
        global_position: 1,
        transaction_id: 1,
        aggregate_type: UserEvent::LOGIN_FAILED.aggregate_type().into(),
        aggregate_id: Uuid::new_v4().to_string(),
        sequence: 1,
        event_type: UserEvent::LOGIN_FAILED.name().into(),
        event_version: UserEvent::LOGIN_FAILED.version().into(),
        payload: serde_json::json!({ "Bogus": {} }),
        metadata: EventMetadata::default(),
        recorded_at: Utc::now(),
    }
}

#[tokio::test]
async fn an_undecodable_event_is_listed_with_its_reason_replayed_and_purged() {
    let fx = Fixture::new(|_| {}).await;
    let poison = [undecodable_login_failure(), undecodable_login_failure()];
    fx.broker.publish(&poison).await;
    let _worker = run::start_in_process(fx.settings.clone()).await;
    wait_for_dead_letters(&fx, 2).await;

    let listed = cli(&fx, &["list", "--queue", "worker.lockout"]).await;
    let dead_queue = fx.broker.dead_letter_queue();
    assert!(
        listed.starts_with(&format!("2 dead letters in {dead_queue}")),
        "{listed}"
    );
    let ids: Vec<String> = listed
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().next().unwrap().to_owned())
        .collect();
    let sent: Vec<String> = poison.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(ids, sent, "in the order they failed");
    for line in listed.lines().skip(1) {
        assert!(line.contains(UserEvent::LOGIN_FAILED.name()), "{line}");
        assert!(line.contains("failed 1x  dead-lettered 1x"), "{line}");
    }
    assert_eq!(
        cli(&fx, &["list", "--queue", "worker.lockout"]).await,
        listed,
        "a listing changes nothing"
    );
    wait_for_dead_letters(&fx, 2).await;

    let first = &sent[0];
    let replayed = cli(&fx, &["replay", "--queue", "worker.lockout", "--id", first]).await;
    assert!(replayed.starts_with(&format!("1 replayed to {}", fx.broker.queue())));
    // It still does not decode: back at once, dead-lettered a second time.
    eventually(TIMEOUT, "the replayed event dead again", || async {
        let listed = cli(&fx, &["list", "--id", first]).await;
        listed.contains("dead-lettered 2x").then_some(())
    })
    .await;

    let purged = cli(&fx, &["purge", "--queue", "worker.lockout"]).await;
    assert!(
        purged.starts_with(&format!("2 purged from {dead_queue}")),
        "{purged}"
    );
    wait_for_dead_letters(&fx, 0).await;
    let webhooks = fx.settings.webhook_consumption().group;
    let webhooks_dead = fx
        .settings
        .common
        .topology()
        .dead_letter_queue_name(&webhooks);
    let all = cli(&fx, &["list"]).await;
    assert!(
        all.contains(&format!("0 dead letters in {dead_queue}")),
        "{all}"
    );
    assert!(
        all.contains(&format!("0 dead letters in {webhooks_dead}")),
        "{all}"
    );
}

async fn wait_for_dead_letters(fx: &Fixture, count: u32) {
    let dead_queue = fx.broker.dead_letter_queue();
    eventually(TIMEOUT, "the dead letters", || async {
        (fx.broker.ready(&dead_queue).await == count).then_some(())
    })
    .await;
}

async fn cli(fx: &Fixture, args: &[&str]) -> String {
    let args = [&["dead-letters"], args].concat();
    let env = vec![(
        "WORKER_DELIVERY_LIMIT",
        fx.settings.delivery_limit.to_string(),
    )];
    succeeded(&run_cli(WORKER, &fx.settings.common, &env, &args).await)
}
