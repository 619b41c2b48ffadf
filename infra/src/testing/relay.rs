//! Stands in for the outbox relay: reads committed events in publishing
//! order from where it last stopped.

use std::time::{Duration, Instant};

use bus::Envelope;
use sqlx::PgPool;

use super::{TestBroker, TIMEOUT};
use crate::event_log::{self, LogPosition};

#[derive(Default)]
pub struct Relay {
    pub position: LogPosition,
}

impl Relay {
    /// Events committed since the last call, in log order. Like the relay,
    /// it reads only below the oldest running transaction of this database,
    /// and waits until nothing is held back.
    pub async fn next_events(&mut self, pool: &PgPool) -> Vec<Envelope> {
        let started = Instant::now();
        let mut events = Vec::new();
        loop {
            let batch = event_log::read_committed_after(pool, self.position, 1000)
                .await
                .expect("read the event log");
            if let Some(last) = batch.last() {
                self.position = LogPosition::of(last);
                events.extend(batch);
                continue;
            }
            let held_back = event_log::has_rows_held_back(pool, self.position)
                .await
                .expect("look for held back events");
            if !held_back {
                return events;
            }
            assert!(started.elapsed() < TIMEOUT, "events held back for too long");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Publishes the events committed since the last call; returns them.
    pub async fn forward(&mut self, pool: &PgPool, broker: &TestBroker) -> Vec<Envelope> {
        let events = self.next_events(pool).await;
        broker.publish(&events).await;
        events
    }
}

/// Every committed event in publishing order.
pub async fn committed_events(pool: &PgPool) -> Vec<Envelope> {
    Relay::default().next_events(pool).await
}
