//! The bench's own consumer group on the service's exchange ("bench.tap",
//! bound with "#"): records when each event arrives from the broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::Connection;

use crate::run::AbortOnDrop;

pub fn group() -> bus::ConsumerGroup {
    bus::ConsumerGroup {
        name: "bench.tap".into(),
        binding_keys: vec!["#".into()],
        delivery_limit: 10,
    }
}

/// When an event arrived on the tap queue, and what it was.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub transaction_id: i64,
    pub aggregate_id: String,
}

#[derive(Debug, Default)]
pub struct TapLog {
    /// First arrival of each global position.
    pub by_position: HashMap<i64, Seen>,
    pub messages: u64,
    /// Messages whose global position had already arrived (re-publishes).
    pub duplicates: u64,
    pub undecodable: u64,
    pub event_types: BTreeMap<String, u64>,
    /// Why the consumer stopped, if it did.
    pub ended: Option<String>,
}

pub type SharedTap = Arc<Mutex<TapLog>>;

/// Consumes `queue` (auto-ack: the bench only observes) on a channel of its own.
pub async fn start(
    connection: &Connection,
    queue: &str,
) -> anyhow::Result<(SharedTap, AbortOnDrop)> {
    let channel = connection.create_channel().await?;
    let options = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "bench-tap".into(),
            options,
            FieldTable::default(),
        )
        .await?;
    let log = SharedTap::default();
    let shared = log.clone();
    let task = tokio::spawn(async move {
        let _channel = channel;
        let ended = loop {
            match consumer.next().await {
                Some(Ok(delivery)) => record(&shared, &delivery.data, Instant::now()),
                Some(Err(error)) => break format!("tap consumer failed: {error}"),
                None => break "tap consumer was cancelled".to_string(),
            }
        };
        shared.lock().expect("tap log").ended = Some(ended);
    });
    Ok((log, AbortOnDrop(task)))
}

fn record(log: &SharedTap, body: &[u8], at: Instant) {
    let mut log = log.lock().expect("tap log");
    log.messages += 1;
    let Ok(event) = bus::Envelope::from_json(body) else {
        log.undecodable += 1;
        return;
    };
    *log.event_types.entry(event.event_type).or_default() += 1;
    if log.by_position.contains_key(&event.global_position) {
        log.duplicates += 1;
        return;
    }
    log.by_position.insert(
        event.global_position,
        Seen {
            at,
            transaction_id: event.transaction_id,
            aggregate_id: event.aggregate_id,
        },
    );
}
