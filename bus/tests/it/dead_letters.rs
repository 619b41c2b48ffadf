use std::time::Duration;

use crate::common::*;
use bus::{count_dead_letters, replay_dead_letters, sweep, Disposal, Envelope, Publisher};
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

/// Publishes `count` events and rejects each from the queue, so the broker
/// dead-letters them (reason `rejected`), in order.
async fn dead_letter(fx: &Fixture, count: i64) -> Vec<Envelope> {
    let events = events(count);
    Publisher::new(&fx.conn, &fx.topology.exchange)
        .await
        .unwrap()
        .publish_batch(&events)
        .await
        .unwrap();
    for _ in 0..count {
        let message = loop {
            let got = fx
                .channel
                .basic_get(fx.queue().as_str().into(), BasicGetOptions::default())
                .await
                .unwrap();
            match got {
                Some(message) => break message,
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let reject = BasicRejectOptions { requeue: false };
        message.delivery.reject(reject).await.unwrap();
    }
    wait_until(Duration::from_secs(10), || async {
        fx.ready(&fx.dead_queue()).await == count as u32
    })
    .await;
    events
}

/// Takes every message of the dead-letter queue, in order.
async fn drain_dead(fx: &Fixture) -> Vec<Envelope> {
    let mut left = Vec::new();
    while let Some(message) = fx.get(&fx.dead_queue()).await {
        left.push(Envelope::from_json(&message.delivery.data).unwrap());
    }
    left
}

#[tokio::test]
async fn listing_leaves_every_dead_letter_in_place_in_order() {
    let fx = Fixture::new(5).await;
    let events = dead_letter(&fx, 6).await;

    for _ in 0..3 {
        let listed = sweep(&fx.conn, &fx.topology, &fx.group, 100, |_| Disposal::Keep)
            .await
            .unwrap();
        let ids: Vec<String> = listed
            .iter()
            .map(|(letter, _)| letter.message_id.clone().unwrap())
            .collect();
        let expected: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
        assert_eq!(ids, expected, "listed in queue order");
        let (letter, _) = &listed[0];
        assert_eq!(letter.reason, format!("rejected in {}", fx.queue()));
        assert_eq!(letter.deaths, 1);
        assert_eq!(letter.event_type.as_deref(), Some("thing.happened"));
        wait_until(Duration::from_secs(10), || async {
            fx.ready(&fx.dead_queue()).await == 6
        })
        .await;
    }
    let limited = sweep(&fx.conn, &fx.topology, &fx.group, 2, |_| Disposal::Keep)
        .await
        .unwrap();
    assert_eq!(limited.len(), 2, "at most `max`");
    wait_until(Duration::from_secs(10), || async {
        fx.ready(&fx.dead_queue()).await == 6
    })
    .await;

    assert_eq!(drain_dead(&fx).await, events, "unchanged, in order");
    assert_eq!(fx.ready(&fx.queue()).await, 0, "nothing replayed");
}

#[tokio::test]
async fn one_dead_letter_is_replayed_and_another_purged_by_id() {
    let fx = Fixture::new(5).await;
    let events = dead_letter(&fx, 5).await;
    let replayed = events[1].event_id.to_string();
    let purged = events[3].event_id.to_string();

    let swept = sweep(
        &fx.conn,
        &fx.topology,
        &fx.group,
        100,
        |letter| match letter.message_id.as_deref() {
            Some(id) if id == replayed => Disposal::Replay,
            Some(id) if id == purged => Disposal::Purge,
            _ => Disposal::Keep,
        },
    )
    .await
    .unwrap();

    assert_eq!(swept.len(), 5);
    wait_until(Duration::from_secs(10), || async {
        fx.ready(&fx.dead_queue()).await == 3
    })
    .await;
    let back = fx.get(&fx.queue()).await.expect("the replayed message");
    assert_eq!(Envelope::from_json(&back.delivery.data).unwrap(), events[1]);
    let headers = back
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    assert!(!headers.inner().contains_key(bus::DEAD_LETTER_REASON_HEADER));
    assert!(fx.get(&fx.queue()).await.is_none(), "only that one");
    let left = drain_dead(&fx).await;
    assert_eq!(
        left,
        vec![events[0].clone(), events[2].clone(), events[4].clone()]
    );
}
