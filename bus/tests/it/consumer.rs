mod common;

use std::{
    sync::{atomic::AtomicBool, atomic::Ordering, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use bus::{
    run_consumer, BatchHandler, BusError, ConsumerOptions, Envelope, HandlerError, Publisher,
};
use common::*;
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
/// on its first `failures` deliveries.
#[derive(Default)]
struct Handler {
    calls: Calls,
    succeeded: Mutex<Vec<Uuid>>,
    poison: Option<Uuid>,
    failures: usize,
    delay: Duration,
}

impl Handler {
    fn failing(poison: Uuid, failures: usize) -> Self {
        Self {
            poison: Some(poison),
            failures,
            ..Self::default()
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
            return Err(HandlerError::new("poison event"));
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
async fn failing_event_is_redelivered_and_acked_once_it_succeeds() {
    let fx = Fixture::new(5).await;
    let published = vec![
        event("u-1", 1, "user.registered"),
        event("u-2", 2, "user.registered"),
        event("u-3", 3, "user.registered"),
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
async fn poison_event_is_dead_lettered_after_the_delivery_limit() {
    let delivery_limit = 2;
    let fx = Fixture::new(delivery_limit).await;
    let published = vec![
        event("u-1", 1, "user.registered"),
        event("u-2", 2, "user.registered"),
        event("u-3", 3, "user.registered"),
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
async fn undecodable_message_is_dead_lettered_without_retries() {
    let fx = Fixture::new(5).await;
    fx.channel
        .basic_publish(
            fx.topology.exchange.as_str().into(),
            "user.garbage".into(),
            BasicPublishOptions::default(),
            b"{not an envelope",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let valid = event("u-1", 1, "user.registered");
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
    let death = first_death(&dead.delivery.properties).unwrap();
    assert_eq!(death, ("rejected".to_owned(), 1));
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
