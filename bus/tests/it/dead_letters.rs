use std::time::Duration;

use crate::common::*;
use bus::{count_dead_letters, replay_dead_letters, Envelope, Publisher};
use lapin::options::{BasicGetOptions, BasicRejectOptions};

#[tokio::test]
async fn dead_letters_are_counted_and_replayed_to_the_queue() {
    let fx = Fixture::new(5).await;
    let events = events(3);
    Publisher::new(&fx.conn, &fx.topology.exchange)
        .await
        .unwrap()
        .publish_batch(&events)
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        fx.ready(&fx.queue()).await == 3
    })
    .await;
    for _ in 0..3 {
        let message = fx
            .channel
            .basic_get(fx.queue().as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
            .expect("message");
        message
            .delivery
            .reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
    }
    wait_until(Duration::from_secs(10), || async {
        fx.ready(&fx.dead_queue()).await == 3
    })
    .await;
    assert_eq!(
        count_dead_letters(&fx.conn, &fx.topology, &fx.group)
            .await
            .unwrap(),
        3
    );

    let moved = replay_dead_letters(&fx.conn, &fx.topology, &fx.group, 2)
        .await
        .unwrap();
    assert_eq!(moved, 2, "at most `max`");
    let moved = replay_dead_letters(&fx.conn, &fx.topology, &fx.group, 10)
        .await
        .unwrap();
    assert_eq!(moved, 1);
    assert_eq!(
        count_dead_letters(&fx.conn, &fx.topology, &fx.group)
            .await
            .unwrap(),
        0
    );

    let mut replayed = Vec::new();
    while let Some(message) = fx.get(&fx.queue()).await {
        replayed.push(Envelope::from_json(&message.delivery.data).unwrap());
    }
    assert_eq!(
        replayed, events,
        "every dead letter back once, in order, unchanged"
    );
}
