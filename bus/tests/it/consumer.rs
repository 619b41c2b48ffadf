use std::{
    sync::{atomic::AtomicBool, atomic::Ordering, Mutex},
    time::Duration,
};

use crate::common::*;
use async_trait::async_trait;
use bus::{
    run_consumer, BatchHandler, BusError, ConsumerOptions, Envelope, HandlerError, Publisher,
};
use lapin::{options::BasicPublishOptions, BasicProperties};
use tokio::sync::watch;
use uuid::Uuid;

const TIMEOUT: Duration = Duration::from_secs(20);

fn options() -> ConsumerOptions {
    ConsumerOptions {
        prefetch: 256,
        max_batch: 128,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        consumer_tag: format!("test-{}", Uuid::new_v4()),
    }
}

async fn publish(fx: &Fixture, events: &[Envelope]) {
    let publisher = Publisher::new(&fx.conn, &fx.topology.exchange)
        .await
        .unwrap();
    publisher.publish_batch(events).await.unwrap();
}

/// Records calls; fails every batch holding `poison`, and the poison event alone
/// on its first `failures` deliveries (transiently unless `permanent`).
#[derive(Default)]
struct Handler {
    calls: Calls,
    succeeded: Mutex<Vec<Uuid>>,
    poison: Option<Uuid>,
    failures: usize,
    permanent: bool,
    delay: Duration,
}

/// The cause of a poison event's failure, with a source of its own.
#[derive(Debug, thiserror::Error)]
#[error("poison event")]
struct Poison(#[source] std::io::Error);

impl Handler {
    fn failing(poison: Uuid, failures: usize) -> Self {
        Self {
            poison: Some(poison),
            failures,
            ..Self::default()
        }
    }

    fn failing_for_good(poison: Uuid) -> Self {
        Self {
            permanent: true,
            ..Self::failing(poison, usize::MAX)
        }
    }

    fn error(&self) -> HandlerError {
        let cause = Poison(std::io::Error::other("payload unreadable"));
        if self.permanent {
            HandlerError::permanent(cause)
        } else {
            HandlerError::transient(cause)
        }
    }

    fn succeeded(&self) -> Vec<Uuid> {
        self.succeeded.lock().unwrap().clone()
    }

    fn succeeded_count(&self, id: Uuid) -> usize {
        self.succeeded().iter().filter(|done| **done == id).count()
    }

    fn should_fail(&self, events: &[Envelope]) -> bool {
        let Some(poison) = self.poison else {
            return false;
        };
        if !events.iter().any(|e| e.event_id == poison) {
            return false;
        }
        events.len() > 1 || self.calls.single(poison) <= self.failures
    }
}

#[async_trait]
impl BatchHandler for Handler {
    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        self.calls.record(events);
        tokio::time::sleep(self.delay).await;
        if self.should_fail(events) {
            return Err(self.error());
        }
        let ids = events.iter().map(|e| e.event_id);
        self.succeeded.lock().unwrap().extend(ids);
        Ok(())
    }
}

#[tokio::test]
async fn consumes_all_events_in_order_and_in_batches() {
    let fx = Fixture::new(5).await;
    let published = events(300);
    publish(&fx, &published).await;
    let handler = Handler::default();
    let opts = options();
    let (stop, shutdown) = watch::channel(false);

    let result = run_with(
        TIMEOUT,
        run_consumer(&fx.conn, &fx.queue(), &handler, &opts, shutdown),
        async {
            wait_until(TIMEOUT, || async { handler.succeeded().len() >= 300 }).await;
            stop.send_replace(true);
        },
    )
    .await;

    result.unwrap();
    let expected: Vec<Uuid> = published.iter().map(|e| e.event_id).collect();
    assert_eq!(handler.succeeded(), expected);
    let calls = handler.calls.all();
    assert!(calls.iter().all(|batch| batch.len() <= 128));
    assert!(calls.len() < 300, "events were not batched");
    assert_eq!(fx.ready(&fx.queue()).await, 0);
}

#[tokio::test]
async fn transient_failure_is_redelivered_and_acked_once_it_succeeds() {
    let fx = Fixture::new(5).await;
    let published = vec![
        event("t-1", 1, "thing.happened"),
        event("t-2", 2, "thing.happened"),
        event("t-3", 3, "thing.happened"),
    ];
    let poison = published[1].event_id;
    publish(&fx, &published).await;
    let handler = Handler::failing(poison, 2);
    let opts = options();
    let (stop, shutdown) = watch::channel(false);

    let result = run_with(
        TIMEOUT,
        run_consumer(&fx.conn, &fx.queue(), &handler, &opts, shutdown),
        async {
            wait_until(TIMEOUT, || async { handler.succeeded_count(poison) > 0 }).await;
            // Give a wrongly unacked message the chance to come back.
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.send_replace(true);
        },
    )
    .await;

    result.unwrap();
    // Two failed deliveries, then the successful third one.
    assert_eq!(handler.calls.single(poison), 3);
    for event in &published {
        assert_eq!(handler.succeeded_count(event.event_id), 1);
    }
    assert_eq!(fx.ready(&fx.queue()).await, 0);
    assert_eq!(fx.ready(&fx.dead_queue()).await, 0);
}

#[tokio::test]
async fn transient_failure_is_dead_lettered_after_the_delivery_limit() {
    let delivery_limit = 2;
    let fx = Fixture::new(delivery_limit).await;
    let published = vec![
        event("t-1", 1, "thing.happened"),
        event("t-2", 2, "thing.happened"),
        event("t-3", 3, "thing.happened"),
    ];
    let poison = published[1].event_id;
    publish(&fx, &published).await;
    let handler = Handler::failing(poison, usize::MAX);
    let opts = options();
    let (stop, shutdown) = watch::channel(false);

    let result = run_with(
        TIMEOUT,
        run_consumer(&fx.conn, &fx.queue(), &handler, &opts, shutdown),
        async {
            wait_until(TIMEOUT, || async { fx.ready(&fx.dead_queue()).await == 1 }).await;
            stop.send_replace(true);
        },
    )
    .await;

    result.unwrap();
    // RabbitMQ 3.10 dead-letters once the delivery count exceeds the limit:
    // the first delivery plus `delivery_limit` redeliveries.
    assert_eq!(handler.calls.single(poison), delivery_limit as usize + 1);
    assert_eq!(handler.succeeded_count(published[0].event_id), 1);
    assert_eq!(handler.succeeded_count(published[2].event_id), 1);
    assert_eq!(handler.succeeded_count(poison), 0);

    let dead = fx.get(&fx.dead_queue()).await.expect("dead-lettered event");
    let dead_event = Envelope::from_json(&dead.delivery.data).unwrap();
    assert_eq!(dead_event.event_id, poison);
    let (reason, _) = first_death(&dead.delivery.properties).unwrap();
    assert_eq!(reason, "delivery_limit");
    assert_eq!(fx.ready(&fx.queue()).await, 0);
}

#[tokio::test]
async fn permanent_failure_is_dead_lettered_on_its_first_delivery_with_its_reason() {
    let fx = Fixture::new(5).await;
    let published = vec![
        event("t-1", 1, "thing.happened"),
        event("t-2", 2, "thing.happened"),
        event("t-3", 3, "thing.happened"),
    ];
    let poison = published[1].event_id;
    publish(&fx, &published).await;
    let handler = Handler::failing_for_good(poison);
    let opts = options();
    let (stop, shutdown) = watch::channel(false);

    let result = run_with(
        TIMEOUT,
        run_consumer(&fx.conn, &fx.queue(), &handler, &opts, shutdown),
        async {
            wait_until(TIMEOUT, || async { fx.ready(&fx.dead_queue()).await == 1 }).await;
            // Give a wrongly requeued message the chance to come back.
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.send_replace(true);
        },
    )
    .await;

    result.unwrap();
    assert_eq!(handler.calls.single(poison), 1, "no retries");
    assert_eq!(handler.succeeded_count(published[0].event_id), 1);
    assert_eq!(handler.succeeded_count(published[2].event_id), 1);
    assert_eq!(handler.succeeded_count(poison), 0);

    let dead = fx.get(&fx.dead_queue()).await.expect("dead-lettered event");
    let dead_event = Envelope::from_json(&dead.delivery.data).unwrap();
    assert_eq!(dead_event, published[1]);
    let properties = &dead.delivery.properties;
    assert_eq!(
        reason_header(properties).as_deref(),
        Some("poison event: payload unreadable")
    );
    let message_id = poison.to_string();
    assert_eq!(
        properties.message_id().as_ref().unwrap().as_str(),
        message_id
    );
    assert_eq!(fx.ready(&fx.queue()).await, 0);
    assert_eq!(fx.ready(&fx.dead_queue()).await, 0);
}

#[tokio::test]
async fn undecodable_message_is_dead_lettered_without_retries() {
    let fx = Fixture::new(5).await;
    fx.channel
        .basic_publish(
            fx.topology.exchange.as_str().into(),
            "thing.garbled".into(),
            BasicPublishOptions::default(),
            b"{not an envelope",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let valid = event("t-1", 1, "thing.happened");
    publish(&fx, std::slice::from_ref(&valid)).await;
    let handler = Handler::default();
    let opts = options();
    let (stop, shutdown) = watch::channel(false);

    let result = run_with(
        TIMEOUT,
        run_consumer(&fx.conn, &fx.queue(), &handler, &opts, shutdown),
        async {
            wait_until(TIMEOUT, || async {
                fx.ready(&fx.dead_queue()).await == 1 && !handler.succeeded().is_empty()
            })
            .await;
            stop.send_replace(true);
        },
    )
    .await;

    result.unwrap();
    assert_eq!(handler.calls.all(), vec![vec![valid.event_id]]);
    let dead = fx.get(&fx.dead_queue()).await.expect("dead-lettered body");
    assert_eq!(dead.delivery.data, b"{not an envelope");
    let reason = reason_header(&dead.delivery.properties).expect("reason header");
    assert!(reason.starts_with("cannot decode envelope"), "{reason}");
    assert_eq!(fx.ready(&fx.queue()).await, 0);
}

#[tokio::test]
async fn shutdown_when_idle_returns_ok() {
    let fx = Fixture::new(5).await;
    let handler = Handler::default();
    let opts = options();
    let (stop, shutdown) = watch::channel(false);

    let result = run_with(
        Duration::from_secs(5),
        run_consumer(&fx.conn, &fx.queue(), &handler, &opts, shutdown),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.send_replace(true);
        },
    )
    .await;

    result.unwrap();
    assert!(handler.calls.all().is_empty());
}

/// Triggers the shutdown from inside its first call, then keeps working.
struct StopsOnFirstCall {
    inner: Handler,
    stop: watch::Sender<bool>,
    stopped: AtomicBool,
}

#[async_trait]
impl BatchHandler for StopsOnFirstCall {
    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            self.stop.send_replace(true);
        }
        self.inner.handle(events).await
    }
}

#[tokio::test]
async fn shutdown_finishes_the_deliveries_in_hand() {
    let fx = Fixture::new(5).await;
    let published = events(20);
    publish(&fx, &published).await;
    let (stop, shutdown) = watch::channel(false);
    let handler = StopsOnFirstCall {
        inner: Handler {
            delay: Duration::from_millis(200),
            ..Handler::default()
        },
        stop,
        stopped: AtomicBool::new(false),
    };
    let opts = ConsumerOptions {
        max_batch: 5,
        ..options()
    };

    let queue = fx.queue();
    let consumer = run_consumer(&fx.conn, &queue, &handler, &opts, shutdown);
    let result = run_with(TIMEOUT, consumer, async {}).await;

    result.unwrap();
    let expected: Vec<Uuid> = published.iter().map(|e| e.event_id).collect();
    assert_eq!(handler.inner.succeeded(), expected);
    assert_eq!(fx.ready(&fx.queue()).await, 0);
}

#[tokio::test]
async fn deleting_the_queue_ends_the_consumer_with_an_error() {
    let fx = Fixture::new(5).await;
    let handler = Handler::default();
    let opts = options();
    let (_stop, shutdown) = watch::channel(false);

    let result = run_with(
        Duration::from_secs(5),
        run_consumer(&fx.conn, &fx.queue(), &handler, &opts, shutdown),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            fx.topology
                .delete_group(&fx.channel, &fx.group)
                .await
                .unwrap();
        },
    )
    .await;

    assert!(
        matches!(result, Err(BusError::ConsumerCancelled { .. })),
        "{result:?}"
    );
}
