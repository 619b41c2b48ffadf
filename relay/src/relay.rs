//! The outbox relay: the event table is the outbox. The one active relay
//! (a PostgreSQL advisory lock) reads committed events in publishing order
//! and publishes them with publisher confirms, a bounded window of batches
//! in flight: it reads and sends the next batch while earlier ones await
//! their confirms. The checkpoint advances only to the end of a batch that,
//! with every batch before it, is confirmed; on a nack or a channel error
//! the relay stops and starts again from the checkpoint. A crash in between
//! re-publishes; consumers are idempotent. The checkpoint signer follows
//! the checkpoint in a task of its own.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::{Envelope, PendingBatch, Publisher, Topology};
use infra::broker::BrokerLink;
use infra::checkpoints::Checkpoint;
use infra::event_log::{self, LogPosition};
use infra::shutdown::Shutdown;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::seal::{LogSealer, SealError};
use crate::RelaySettings;

/// Key of the advisory lock that elects the active relay ("relay" in ASCII).
const LEADER_LOCK: i64 = 0x72_656c_6179;
/// Where the relay has published up to.
pub const RELAY_CHECKPOINT: Checkpoint = Checkpoint::Relay("amqp");
/// How soon to look again when rows exist that an older transaction of this
/// database, still running, holds back; doubles (up to the poll interval)
/// while it runs.
const HELD_BACK_RETRY: Duration = Duration::from_millis(5);

/// Publishes from a checkpoint: one batch at a time (`publish_next_batch`,
/// `save_checkpoint`), or pipelined while elected (`run`).
pub struct Relay {
    pool: PgPool,
    publisher: Arc<Publisher>,
    settings: RelaySettings,
    checkpoint: LogPosition,
    signer: Signer,
}

/// Where the checkpoint signer runs.
enum Signer {
    /// Called after each checkpoint write (one batch at a time).
    Inline(Box<LogSealer>),
    /// In its own task, told of each checkpoint written.
    Task(watch::Sender<LogPosition>),
}

/// A batch sent whose confirms may be outstanding.
struct InFlight {
    last: LogPosition,
    newest_recorded: chrono::DateTime<chrono::Utc>,
    sent: Instant,
    confirms: PendingBatch,
}

impl Relay {
    pub async fn new(
        pool: PgPool,
        connection: &lapin::Connection,
        topology: &Topology,
        settings: RelaySettings,
    ) -> anyhow::Result<Self> {
        let channel = connection.create_channel().await?;
        topology.declare_exchange(&channel).await?;
        let publisher = Arc::new(Publisher::new(connection, &topology.exchange).await?);
        let checkpoint = RELAY_CHECKPOINT.load(&pool).await?;
        metrics::gauge!(crate::metrics::CHECKPOINT_POSITION).set(checkpoint.global_position as f64);
        let sealer = LogSealer::new(pool.clone(), settings.seal.clone());
        sealer.register_key().await?;
        Ok(Self {
            pool,
            publisher,
            settings,
            checkpoint,
            signer: Signer::Inline(Box::new(sealer)),
        })
    }

    pub fn checkpoint(&self) -> LogPosition {
        self.checkpoint
    }

    /// Publishes the next batch and returns where it ends, without saving
    /// that as the checkpoint. `None` when nothing is ready to publish.
    pub async fn publish_next_batch(&mut self) -> anyhow::Result<Option<LogPosition>> {
        let Some(batch) = self.send_after(self.checkpoint).await? else {
            return Ok(None);
        };
        let last = batch.last;
        self.confirmed(batch).await?;
        Ok(Some(last))
    }

    /// Reads the batch after `after` and hands it to the broker.
    async fn send_after(&self, after: LogPosition) -> anyhow::Result<Option<InFlight>> {
        let sent = Instant::now();
        let mut batch =
            event_log::read_committed_after(&self.pool, after, self.settings.batch_size).await?;
        let Some(last) = batch.last().map(LogPosition::of) else {
            return Ok(None);
        };
        for envelope in &mut batch {
            redact_secrets(envelope)?;
        }
        let confirms = self.publisher.send_batch(&batch).await?;
        let newest_recorded = batch
            .iter()
            .map(|e| e.recorded_at)
            .max()
            .expect("a batch has an event");
        Ok(Some(InFlight {
            last,
            newest_recorded,
            sent,
            confirms,
        }))
    }

    /// Waits for a sent batch's confirms.
    async fn confirmed(&self, batch: InFlight) -> Result<(), bus::BusError> {
        let events = batch.confirms.len();
        batch.confirms.confirmed().await?;
        metrics::counter!(crate::metrics::EVENTS_PUBLISHED).increment(events as u64);
        let lag = (chrono::Utc::now() - batch.newest_recorded)
            .num_milliseconds()
            .max(0) as f64
            / 1000.0;
        metrics::gauge!(crate::metrics::LAG).set(lag);
        tracing::debug!(events, up_to = batch.last.global_position, "published");
        Ok(())
    }

    /// Saves where publishing got to, then lets the signer fold the
    /// published events into the log's running hash.
    pub async fn save_checkpoint(&mut self, position: LogPosition) -> Result<(), SealError> {
        RELAY_CHECKPOINT.advance(&self.pool, position).await?;
        self.checkpoint = position;
        metrics::gauge!(crate::metrics::CHECKPOINT_POSITION).set(position.global_position as f64);
        match &mut self.signer {
            Signer::Inline(sealer) => sealer.advance_to(position, &self.publisher).await,
            Signer::Task(published) => {
                published.send_replace(position);
                Ok(())
            }
        }
    }

    /// What the checkpoint signer found, if it refuses to sign (only while
    /// it runs inline).
    pub fn signer_refusal(&self) -> Option<&crate::fold::Refusal> {
        match &self.signer {
            Signer::Inline(sealer) => sealer.refusal(),
            Signer::Task(_) => None,
        }
    }

    /// Moves the signer to a task of its own, which folds up to each
    /// checkpoint written from now on and looks again every `idle` when
    /// nothing is published. It ends when the relay is dropped, or with
    /// the signer's error.
    fn spawn_signer(&mut self, idle: Duration) -> JoinHandle<Result<(), SealError>> {
        let (published, mut checkpoints) = watch::channel(self.checkpoint);
        let Signer::Inline(mut sealer) =
            std::mem::replace(&mut self.signer, Signer::Task(published))
        else {
            panic!("the signer runs in a task already");
        };
        let publisher = self.publisher.clone();
        tokio::spawn(async move {
            loop {
                let position = *checkpoints.borrow_and_update();
                sealer.advance_to(position, &publisher).await?;
                tokio::select! {
                    changed = checkpoints.changed() => {
                        if changed.is_err() {
                            return Ok(());
                        }
                    }
                    _ = tokio::time::sleep(idle) => {}
                }
            }
        })
    }

    /// Publishes everything ready, up to `window` batches in flight; true
    /// when it published something. The checkpoint moves to the end of the
    /// oldest batch in flight once it is confirmed: every batch before it
    /// was confirmed earlier, so it never passes an unconfirmed event. Any
    /// failure (a nack, a return, a closed channel) ends it with the
    /// checkpoint where it was; what was sent after it is sent again. On
    /// shutdown it sends nothing more and waits for what is in flight.
    async fn drain(&mut self, shutdown: &Shutdown) -> anyhow::Result<bool> {
        let window = self.settings.window.max(1);
        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(window);
        let mut sent_up_to = self.checkpoint;
        let mut drained = false;
        loop {
            let next = if in_flight.len() < window && !shutdown.is_triggered() {
                self.send_after(sent_up_to).await?
            } else {
                None
            };
            if let Some(batch) = next {
                sent_up_to = batch.last;
                in_flight.push_back(batch);
                if in_flight.len() < window {
                    continue;
                }
            }
            let Some(oldest) = in_flight.pop_front() else {
                break;
            };
            let (last, sent) = (oldest.last, oldest.sent);
            self.confirmed(oldest).await?;
            self.save_checkpoint(last).await?;
            metrics::histogram!(crate::metrics::BATCH_DURATION)
                .record(sent.elapsed().as_secs_f64());
            drained = true;
        }
        if !drained {
            metrics::gauge!(crate::metrics::LAG).set(0.0);
        }
        Ok(drained)
    }
}

/// Password and refresh-token hashes stay in the event store; the broker
/// never carries them. The event leaves as the contract's current version.
fn redact_secrets(envelope: &mut Envelope) -> Result<(), domain::RedactionError> {
    let current = domain::redact_event_payload(
        &envelope.aggregate_type,
        &envelope.event_type,
        &envelope.event_version,
        &mut envelope.payload,
    )?;
    if let Some(version) = current {
        envelope.event_version = version.to_owned();
    }
    Ok(())
}

/// Runs the relay until shutdown: waits to become the leader, then publishes,
/// restarting after any failure.
pub async fn run(
    pool: PgPool,
    broker: Arc<BrokerLink>,
    topology: Topology,
    settings: RelaySettings,
    shutdown: Shutdown,
) {
    while !shutdown.is_triggered() {
        if let Err(error) = lead_when_elected(&pool, &broker, &topology, &settings, &shutdown).await
        {
            tracing::error!(error = %error, "relay failed; restarting");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait() => {}
            }
        }
    }
}

async fn lead_when_elected(
    pool: &PgPool,
    broker: &BrokerLink,
    topology: &Topology,
    settings: &RelaySettings,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    // A connection of its own: the session lock lives as long as it does.
    let mut lock = pool.acquire().await?.detach();
    while !try_lock(&mut lock).await? {
        tokio::select! {
            _ = tokio::time::sleep(settings.poll_interval) => {}
            _ = shutdown.wait() => return Ok(()),
        }
    }
    tracing::info!("relay elected; publishing");
    let connection = broker.connection().await?;
    let mut relay = Relay::new(pool.clone(), &connection, topology, settings.clone()).await?;
    let signer = relay.spawn_signer(settings.poll_interval);
    let published = publish_while_leading(&mut relay, &signer, &mut lock, settings, shutdown).await;
    // The signer is never cut short (between storing a checkpoint and
    // writing its state file, say): without the relay it finishes what it
    // does and ends.
    drop(relay);
    let signed = signer.await;
    published?;
    signed??;
    Ok(())
}

async fn publish_while_leading(
    relay: &mut Relay,
    signer: &JoinHandle<Result<(), SealError>>,
    lock: &mut PgConnection,
    settings: &RelaySettings,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut appended = PgListener::connect_with(&relay.pool).await?;
    appended.listen(event_log::EVENTS_APPENDED_CHANNEL).await?;
    let mut held_back_retry = HELD_BACK_RETRY;
    while !shutdown.is_triggered() && !signer.is_finished() {
        if relay.drain(shutdown).await? {
            held_back_retry = HELD_BACK_RETRY;
            continue;
        }
        let wait = if event_log::has_rows_held_back(&relay.pool, relay.checkpoint()).await? {
            held_back_retry = (held_back_retry * 2).min(settings.poll_interval);
            held_back_retry / 2
        } else {
            settings.poll_interval
        };
        tokio::select! {
            notification = appended.recv() => { notification?; }
            _ = tokio::time::sleep(wait) => { still_locked(lock).await?; }
            _ = shutdown.wait() => {}
        }
    }
    Ok(())
}

async fn try_lock(connection: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LEADER_LOCK)
        .fetch_one(connection)
        .await
}

/// Fails when the lock's connection is gone, so that the relay stops
/// publishing once another may have been elected.
async fn still_locked(connection: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT 1")
        .execute(connection)
        .await
        .map(|_| ())
}
