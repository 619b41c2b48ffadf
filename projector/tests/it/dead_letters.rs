//! `projector dead-letters list|replay|purge` on real dead letters: one
//! dead-lettered at once with its reason (permanent), one after the
//! delivery limit (transient). Listing leaves the queue as it was.

use bus::Envelope;
use domain::UserEvent;
use infra::testing::{eventually, run_cli, succeeded};
use uuid::Uuid;

use crate::support::run;
use crate::support::writer::Writer;
use crate::support::{committed_events, Fixture, TIMEOUT};

const PROJECTOR: &str = env!("CARGO_BIN_EXE_projector");
const DELIVERY_LIMIT: u32 = 3;

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_listed_with_their_reason_replayed_and_purged_by_id() {
    let fx = Fixture::new(|settings| settings.delivery_limit = DELIVERY_LIMIT).await;
    let writer = Writer::new(fx.pool());
    writer.register(1).await;
    let events = committed_events(fx.pool()).await;
    let template = || Envelope {
        event_id: Uuid::new_v4(),
        aggregate_id: Uuid::now_v7().to_string(),
        sequence: 1,
        ..events[0].clone()
    };
    let undecodable = Envelope {
        event_type: UserEvent::REGISTERED.name().into(),
        payload: serde_json::json!({ "Bogus": {} }),
        ..template()
    };
    let ahead_of_history = Envelope {
        sequence: 2,
        ..template()
    };
    fx.broker
        .publish(&[undecodable.clone(), ahead_of_history.clone()])
        .await;
    let _projector = run::start_in_process(fx.settings.clone()).await;
    let dead_queue = fx.broker.dead_letter_queue();
    wait_for_dead_letters(&fx, 2).await;

    let listed = list(&fx).await;
    let permanent = line_of(&listed, &undecodable);
    assert!(
        permanent.contains("failed 1x  dead-lettered 1x"),
        "{permanent}"
    );
    assert!(permanent.contains("does not decode"), "{permanent}");
    assert!(
        permanent.contains(UserEvent::REGISTERED.name()),
        "{permanent}"
    );
    let transient = line_of(&listed, &ahead_of_history);
    let limit = format!("failed {}x  dead-lettered 1x", DELIVERY_LIMIT + 1);
    assert!(transient.contains(&limit), "{transient}");
    assert!(
        transient.contains(&format!("delivery_limit in {}", fx.broker.queue())),
        "{transient}"
    );
    assert!(listed.starts_with(&format!("2 dead letters in {dead_queue}")));
    assert_eq!(list(&fx).await, listed, "a listing changes nothing");
    wait_for_dead_letters(&fx, 2).await;

    let replayed = cli(
        &fx,
        &["replay", "--id", &ahead_of_history.event_id.to_string()],
    )
    .await;
    assert!(replayed.starts_with(&format!("1 replayed to {}", fx.broker.queue())));
    // Still ahead of the store: it fails its delivery limit again and is back.
    eventually(TIMEOUT, "the replayed event dead again", || async {
        let listed = list(&fx).await;
        line_of_opt(&listed, &ahead_of_history)
            .filter(|line| line.contains("dead-lettered 2x"))
            .map(|_| ())
    })
    .await;

    let group = &fx.settings.consumer_group().name;
    let id = undecodable.event_id.to_string();
    let purged = cli(&fx, &["purge", "--queue", group, "--id", &id]).await;
    assert!(
        purged.starts_with(&format!("1 purged from {dead_queue}")),
        "{purged}"
    );
    wait_for_dead_letters(&fx, 1).await;
    let listed = list(&fx).await;
    assert!(line_of_opt(&listed, &undecodable).is_none(), "{listed}");

    let unknown = Uuid::new_v4().to_string();
    let output = run_cli(
        PROJECTOR,
        &fx.settings.common,
        &env(),
        &["dead-letters", "purge", "--id", &unknown],
    )
    .await;
    assert!(!output.status.success());
    let output = run_cli(
        PROJECTOR,
        &fx.settings.common,
        &env(),
        &["dead-letters", "list", "--queue", "nowhere"],
    )
    .await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains(group));
    wait_for_dead_letters(&fx, 1).await;
}

/// The projector's settings that the command must share with the consumer.
fn env() -> Vec<(&'static str, String)> {
    vec![("PROJECTOR_DELIVERY_LIMIT", DELIVERY_LIMIT.to_string())]
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
    succeeded(&run_cli(PROJECTOR, &fx.settings.common, &env(), &args).await)
}

async fn list(fx: &Fixture) -> String {
    cli(fx, &["list"]).await
}

fn line_of_opt<'a>(listed: &'a str, event: &Envelope) -> Option<&'a str> {
    let id = event.event_id.to_string();
    listed.lines().find(|line| line.contains(&id))
}

fn line_of<'a>(listed: &'a str, event: &Envelope) -> &'a str {
    line_of_opt(listed, event).unwrap_or_else(|| panic!("{} not listed: {listed}", event.event_id))
}
