//! The relay over a backlog: events seeded while the api is stopped, the
//! relay's checkpoint left where it was, then the api started again; from
//! its first batch until the relay's checkpoint (advanced after the
//! broker's confirms) covers the whole backlog, and until its signer has
//! checked and folded it all. Beside it, its limit in the same run: a bare
//! publisher with confirms sending as many copies of one of those messages
//! (as the relay makes it) to as many quorum queues of its own as the
//! relayed event reaches.

use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};

use infra::event_log::LogPosition;
use relay::RELAY_CHECKPOINT;

/// Events per seeding transaction: the cluster is shared, and a long
/// transaction holds back every relay on it.
pub const CHUNK_EVENTS: usize = 100_000;
/// Events per seeded user (a registration and renames).
const EVENTS_PER_USER: usize = 100;
const POLL: Duration = Duration::from_millis(5);
/// Messages per send of the bare publisher, and sends awaiting confirms at
/// most: the relay's defaults.
pub const BARE_BATCH: usize = relay::settings::DEFAULT_BATCH_SIZE as usize;
pub const BARE_WINDOW: usize = relay::settings::DEFAULT_WINDOW_BATCHES;

/// Seeds about `events` events in transactions of [`CHUNK_EVENTS`], moving
/// no checkpoint, then ANALYZE events. Returns the events and the last.
pub async fn seed(db_url: &SecretString, events: usize) -> anyhow::Result<(u64, LogPosition)> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    let metadata = infra::testing::request_metadata(None, "bench");
    let mut users_left = events.div_ceil(EVENTS_PER_USER);
    let per_chunk = CHUNK_EVENTS / EVENTS_PER_USER;
    let mut last = LogPosition::default();
    while users_left > 0 {
        let users = users_left.min(per_chunk);
        let mut tx = db.begin().await?;
        last = infra::testing::seed_renamed_users(&mut tx, users, EVENTS_PER_USER - 1, &metadata)
            .await
            .context("seed the relay's backlog")?;
        tx.commit().await.context("commit the backlog")?;
        users_left -= users;
    }
    sqlx::query("ANALYZE events").execute(&mut db).await?;
    let _ = db.close().await;
    let seeded = events.div_ceil(EVENTS_PER_USER) * EVENTS_PER_USER;
    Ok((seeded as u64, last))
}

/// The relay's progress over the backlog.
#[derive(Clone, Debug)]
pub struct Drained {
    /// Events published from the first observed advance to the last.
    pub events: u64,
    /// From the first observed advance to the checkpoint at `last`.
    pub publishing: Duration,
    /// From `since` (the api's start) to the checkpoint at `last`.
    pub since_start: Duration,
    /// From `since` until the signer had folded up to `last`.
    pub folded_since_start: Duration,
}

impl Drained {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.publishing.as_secs_f64().max(f64::EPSILON)
    }
}

/// Polls the relay's checkpoint until it reaches `last`.
pub async fn watch(
    db_url: &SecretString,
    before: LogPosition,
    last: LogPosition,
    since: Instant,
) -> anyhow::Result<Drained> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    let mut first: Option<(Instant, LogPosition)> = None;
    let finished = loop {
        let position = RELAY_CHECKPOINT
            .load(&mut db)
            .await
            .context("read the relay checkpoint")?;
        let now = Instant::now();
        if first.is_none() && position > before {
            first = Some((now, position));
        }
        if position >= last {
            break now;
        }
        tokio::time::sleep(POLL).await;
    };
    let (started, from) = first.context("the relay checkpoint never moved")?;
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events \
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
           AND (transaction_id, global_position) <= ($3::text::xid8, $4)",
    )
    .bind(from.transaction_id)
    .bind(from.global_position)
    .bind(last.transaction_id)
    .bind(last.global_position)
    .fetch_one(&mut db)
    .await?;
    let _ = db.close().await;
    wait_for_fold(db_url, last).await?;
    Ok(Drained {
        events: events as u64,
        publishing: finished - started,
        since_start: finished - since,
        folded_since_start: since.elapsed(),
    })
}

/// The bare publisher's rate.
#[derive(Clone, Debug)]
pub struct Bare {
    pub events: u64,
    pub bytes: usize,
    /// Quorum queues each message reaches.
    pub queues: usize,
    pub elapsed: Duration,
}

impl Bare {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// How many of `groups` a message under `routing_key` reaches.
pub fn queues_reached(routing_key: &str, groups: &[bus::ConsumerGroup]) -> usize {
    groups
        .iter()
        .filter(|group| {
            group
                .binding_keys
                .iter()
                .any(|key| key == "#" || key == routing_key)
        })
        .count()
}

/// Publishes `events` copies of the relay's message for the event after
/// `after` (its bytes, properties and routing key, as `relay::outbox` makes
/// it) with confirms to fresh quorum queues bound to a fresh topic exchange,
/// as many queues as the relayed event reaches among `groups`, [`BARE_WINDOW`]
/// sends of [`BARE_BATCH`] unconfirmed at most (the relay's defaults);
/// deletes them after.
pub async fn bare_publisher(
    db_url: &SecretString,
    amqp_url: &SecretString,
    topology: &bus::Topology,
    after: LogPosition,
    events: usize,
    groups: &[bus::ConsumerGroup],
) -> anyhow::Result<Bare> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    let sample = relay::outbox::ready_after(&mut db, after, 1)
        .await?
        .and_then(|mut batch| batch.messages.pop())
        .context("an event to publish")?;
    let _ = db.close().await;
    let batch = vec![sample.clone(); BARE_BATCH];
    let connection = infra::broker::connect(amqp_url).await?;
    let channel = connection.create_channel().await?;
    let limits: Vec<bus::ConsumerGroup> = (0..queues_reached(sample.routing_key(), groups).max(1))
        .map(|n| bus::ConsumerGroup {
            name: format!("limit.{n}"),
            binding_keys: vec!["#".into()],
            delivery_limit: 20,
        })
        .collect();
    topology.declare_exchange(&channel).await?;
    for group in &limits {
        topology.declare_group(&channel, group).await?;
    }
    let timed = async {
        let publisher = bus::Publisher::new(&connection, &topology.exchange).await?;
        let started = Instant::now();
        let mut in_flight = std::collections::VecDeque::with_capacity(BARE_WINDOW);
        let mut left = events;
        while left > 0 || !in_flight.is_empty() {
            if left > 0 && in_flight.len() < BARE_WINDOW {
                let send = left.min(BARE_BATCH);
                in_flight.push_back(publisher.send_messages(batch[..send].to_vec()).await?);
                left -= send;
                continue;
            }
            let oldest: bus::PendingBatch = in_flight.pop_front().expect("a send in flight");
            oldest.confirmed().await?;
        }
        anyhow::Ok(started.elapsed())
    }
    .await;
    let deleted = async {
        for group in &limits {
            topology.delete_group(&channel, group).await?;
        }
        topology.delete_exchange(&channel).await
    }
    .await;
    let _ = connection.close(200, "bench bare publisher".into()).await;
    let elapsed = timed?;
    deleted.context("delete the bare publisher's queues and exchange")?;
    Ok(Bare {
        events: events as u64,
        bytes: sample.body_len(),
        queues: limits.len(),
        elapsed,
    })
}

/// Waits until the relay has folded every event up to `target` into the
/// log's running hash (`audit_chain_head`); it folds after publishing.
pub async fn wait_for_fold(db_url: &SecretString, target: LogPosition) -> anyhow::Result<()> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    loop {
        let head: Option<(i64, i64)> =
            sqlx::query_as("SELECT transaction_id, global_position FROM audit_chain_head")
                .fetch_optional(&mut db)
                .await
                .context("read audit_chain_head")?;
        let folded = head.map(|(transaction_id, global_position)| LogPosition {
            transaction_id,
            global_position,
        });
        if folded.is_some_and(|folded| folded >= target) {
            let _ = db.close().await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The relay checkpoint now.
pub async fn checkpoint(db_url: &SecretString) -> anyhow::Result<LogPosition> {
    let mut db = PgConnection::connect(db_url.expose_secret()).await?;
    let position = RELAY_CHECKPOINT.load(&mut db).await?;
    let _ = db.close().await;
    Ok(position)
}
