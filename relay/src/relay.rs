//! The outbox relay: the event table is the outbox. The one active relay
//! (a PostgreSQL advisory lock) reads committed events in publishing order
//! and publishes them with publisher confirms, a bounded window of batches
//! in flight: a task reads and prepares the next batches while earlier ones
//! are sent and await their confirms. The checkpoint advances only to the
//! end of a batch that, with every batch before it, is confirmed; a task of
//! its own writes it, so publishing never waits for that write. On a nack
//! or a channel error the relay stops and starts again from the checkpoint.
//! A crash in between re-publishes; consumers are idempotent. The
//! checkpoint signer follows the checkpoint written in a task of its own.
//! Each stage logs its duration at debug level (`RUST_LOG=relay=debug`).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::{Publisher, Topology};
use futures_util::FutureExt;
use infra::broker::BrokerLink;
use infra::checkpoints::Checkpoint;
use infra::event_log::{self, LogPosition};
use infra::shutdown::Shutdown;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::outbox::{self, OutboxError, ReadyBatch};
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
    /// The signer's own channel: a checkpoint's confirm does not wait for
    /// the events sent before it on the relay's.
    signer_publisher: Arc<Publisher>,
    settings: RelaySettings,
    checkpoint: LogPosition,
    signer: Signer,
}

/// Where the checkpoint is written and the checkpoint signer runs.
enum Signer {
    /// Both called after each batch (one batch at a time).
    Inline(Box<LogSealer>),
    /// Each in a task of its own: the writer is told of each confirmed
    /// position and tells the signer of each checkpoint written.
    Task(watch::Sender<LogPosition>),
}

/// The tasks that follow publishing: the checkpoint writer and the signer.
struct Followers {
    writer: JoinHandle<Result<(), SealError>>,
    signer: JoinHandle<Result<(), SealError>>,
}

impl Followers {
    fn is_finished(&self) -> bool {
        self.writer.is_finished() || self.signer.is_finished()
    }

    /// Once the relay is dropped: the writer writes the last confirmed
    /// position and ends, then the signer finishes what it does and ends.
    async fn finish(self) -> anyhow::Result<()> {
        let written = self.writer.await;
        let signed = self.signer.await;
        written??;
        signed??;
        Ok(())
    }
}

/// A batch sent whose confirms may be outstanding.
struct InFlight {
    last: LogPosition,
    events: usize,
    newest_recorded: chrono::DateTime<chrono::Utc>,
    read_at: Instant,
    /// Resolves once every confirm of the batch is in; polled in place, so
    /// waiting for it can give way to sending the next batch.
    confirmed: Pin<Box<dyn Future<Output = Result<(), bus::BusError>> + Send>>,
}

/// Batches read ahead of the one being sent, at most.
const READ_AHEAD: usize = 2;

/// Reads batches ahead in a task of its own (so that reading and building
/// messages overlap sending and waiting for confirms); stopped when dropped.
struct ReadAhead {
    batches: mpsc::Receiver<Result<(ReadyBatch, Instant), OutboxError>>,
    task: JoinHandle<()>,
}

impl ReadAhead {
    fn spawn(pool: PgPool, after: LogPosition, batch_size: i64) -> Self {
        let (send, batches) = mpsc::channel(READ_AHEAD);
        let task = tokio::spawn(async move {
            let mut after = after;
            loop {
                let read_at = Instant::now();
                let next = outbox::ready_after(&pool, after, batch_size).await;
                if let Ok(Some(batch)) = &next {
                    after = batch.last;
                    tracing::debug!(
                        events = batch.messages.len(),
                        read_us = read_at.elapsed().as_micros() as u64,
                        "batch read"
                    );
                }
                let item = match next {
                    Ok(Some(batch)) => Ok((batch, read_at)),
                    Ok(None) => return,
                    Err(error) => Err(error),
                };
                let failed = item.is_err();
                if send.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Self { batches, task }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
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
        let signer_publisher = Arc::new(Publisher::new(connection, &topology.exchange).await?);
        let checkpoint = RELAY_CHECKPOINT.load(&pool).await?;
        metrics::gauge!(crate::metrics::CHECKPOINT_POSITION).set(checkpoint.global_position as f64);
        let sealer = LogSealer::new(pool.clone(), settings.seal.clone());
        sealer.register_key().await?;
        Ok(Self {
            pool,
            publisher,
            signer_publisher,
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
        let read_at = Instant::now();
        let ready =
            outbox::ready_after(&self.pool, self.checkpoint, self.settings.batch_size).await?;
        let Some(ready) = ready else {
            return Ok(None);
        };
        let mut batch = self.send(ready, read_at).await?;
        let last = batch.last;
        (&mut batch.confirmed).await?;
        self.record_confirmed(&batch);
        Ok(Some(last))
    }

    /// Hands a batch read to the broker.
    async fn send(&self, ready: ReadyBatch, read_at: Instant) -> Result<InFlight, bus::BusError> {
        let sending = Instant::now();
        let events = ready.messages.len();
        let confirms = self.publisher.send_messages(ready.messages).await?;
        tracing::debug!(
            events,
            send_us = sending.elapsed().as_micros() as u64,
            "batch sent"
        );
        Ok(InFlight {
            last: ready.last,
            events,
            newest_recorded: ready.newest_recorded,
            read_at,
            confirmed: Box::pin(confirms.confirmed()),
        })
    }

    /// Counts a batch whose confirms are all in.
    fn record_confirmed(&self, batch: &InFlight) {
        metrics::counter!(crate::metrics::EVENTS_PUBLISHED).increment(batch.events as u64);
        let lag = (chrono::Utc::now() - batch.newest_recorded)
            .num_milliseconds()
            .max(0) as f64
            / 1000.0;
        metrics::gauge!(crate::metrics::LAG).set(lag);
        metrics::histogram!(crate::metrics::BATCH_DURATION)
            .record(batch.read_at.elapsed().as_secs_f64());
        tracing::debug!(
            events = batch.events,
            up_to = batch.last.global_position,
            "published"
        );
    }

    /// Saves where publishing got to, then lets the signer fold the
    /// published events into the log's running hash.
    pub async fn save_checkpoint(&mut self, position: LogPosition) -> Result<(), SealError> {
        match &mut self.signer {
            Signer::Inline(sealer) => {
                save_checkpoint(&self.pool, position).await?;
                self.checkpoint = position;
                sealer.advance_to(position, &self.signer_publisher).await
            }
            Signer::Task(confirmed) => {
                confirmed.send_replace(position);
                self.checkpoint = position;
                Ok(())
            }
        }
    }

    /// What the signer found, if it refuses to sign (only while
    /// it runs inline).
    pub fn signer_refusal(&self) -> Option<&crate::fold::Refusal> {
        match &self.signer {
            Signer::Inline(sealer) => sealer.refusal(),
            Signer::Task(_) => None,
        }
    }

    /// Moves the checkpoint writer and the signer to tasks of their own:
    /// the writer writes the newest confirmed position (without holding up
    /// publishing) and tells the signer, which folds up to each checkpoint
    /// written and looks again every `idle` when nothing is published.
    /// Both end when the relay is dropped, or with an error.
    fn spawn_followers(&mut self, idle: Duration) -> Followers {
        let (confirmed, confirmations) = watch::channel(self.checkpoint);
        let Signer::Inline(sealer) = std::mem::replace(&mut self.signer, Signer::Task(confirmed))
        else {
            panic!("the signer runs in a task already");
        };
        let (written, checkpoints) = watch::channel(self.checkpoint);
        Followers {
            writer: tokio::spawn(write_checkpoints(self.pool.clone(), confirmations, written)),
            signer: tokio::spawn(sign_checkpoints(
                sealer,
                self.signer_publisher.clone(),
                checkpoints,
                idle,
            )),
        }
    }

    /// Publishes everything ready, up to `window` batches in flight, while
    /// a task reads the next batches ahead; true when it published
    /// something. The checkpoint moves to the end of the oldest batch in
    /// flight once it is confirmed (and past the batches after it that are
    /// confirmed by then): every batch before it was confirmed earlier, so
    /// it never passes an unconfirmed event. Any failure (a nack, a return,
    /// a closed channel, a read) ends it with the checkpoint where it was;
    /// what was sent after it is sent again. On shutdown it sends nothing
    /// more and waits for what is in flight.
    async fn drain(&mut self, shutdown: &Shutdown) -> anyhow::Result<bool> {
        let window = self.settings.window.max(1);
        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(window);
        let mut read_ahead = Some(ReadAhead::spawn(
            self.pool.clone(),
            self.checkpoint,
            self.settings.batch_size,
        ));
        let mut drained = false;
        loop {
            let reading_on = read_ahead.is_some();
            let reading = read_ahead.as_mut().filter(|_| in_flight.len() < window);
            let next = async {
                match reading {
                    Some(reader) => reader.batches.recv().await,
                    None => std::future::pending().await,
                }
            };
            let oldest = async {
                match in_flight.front_mut() {
                    Some(batch) => (&mut batch.confirmed).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.wait(), if reading_on => read_ahead = None,
                next = next => match next {
                    Some(Ok((ready, read_at))) => in_flight.push_back(self.send(ready, read_at).await?),
                    Some(Err(error)) => return Err(error.into()),
                    None => read_ahead = None,
                },
                confirmed = oldest => {
                    confirmed?;
                    self.checkpoint_confirmed(&mut in_flight).await?;
                    drained = true;
                }
            }
            if read_ahead.is_none() && in_flight.is_empty() {
                break;
            }
        }
        if !drained {
            metrics::gauge!(crate::metrics::LAG).set(0.0);
        }
        Ok(drained)
    }

    /// Takes the oldest batch in flight (confirmed) and every batch after
    /// it confirmed by now off the window, and saves the end of the last
    /// as the checkpoint.
    async fn checkpoint_confirmed(
        &mut self,
        in_flight: &mut VecDeque<InFlight>,
    ) -> anyhow::Result<()> {
        let mut last = None;
        let mut failed = None;
        while let Some(mut batch) = in_flight.pop_front() {
            if last.is_some() {
                match (&mut batch.confirmed).now_or_never() {
                    Some(Ok(())) => {}
                    Some(Err(error)) => {
                        failed = Some(error);
                        break;
                    }
                    None => {
                        in_flight.push_front(batch);
                        break;
                    }
                }
            }
            self.record_confirmed(&batch);
            last = Some(batch.last);
        }
        let last = last.expect("the oldest batch was confirmed");
        if matches!(&self.signer, Signer::Task(writer) if writer.is_closed()) {
            // Its error ends the relay; publishing further would only be
            // published again.
            anyhow::bail!("the checkpoint writer stopped");
        }
        self.save_checkpoint(last).await?;
        failed.map_or(Ok(()), |error| Err(error.into()))
    }
}

/// Saves where publishing got to.
async fn save_checkpoint(pool: &PgPool, position: LogPosition) -> Result<(), SealError> {
    let saving = Instant::now();
    RELAY_CHECKPOINT.advance(pool, position).await?;
    metrics::gauge!(crate::metrics::CHECKPOINT_POSITION).set(position.global_position as f64);
    tracing::debug!(
        up_to = position.global_position,
        checkpoint_us = saving.elapsed().as_micros() as u64,
        "checkpoint saved"
    );
    Ok(())
}

/// Writes the newest confirmed position each time it moves (those passed
/// meanwhile are skipped) and tells the signer; once publishing is over,
/// writes the last one and ends.
async fn write_checkpoints(
    pool: PgPool,
    mut confirmed: watch::Receiver<LogPosition>,
    written: watch::Sender<LogPosition>,
) -> Result<(), SealError> {
    loop {
        let over = confirmed.changed().await.is_err();
        let position = *confirmed.borrow_and_update();
        if position > *written.borrow() {
            save_checkpoint(&pool, position).await?;
            written.send_replace(position);
        }
        if over {
            return Ok(());
        }
    }
}

/// Folds up to each checkpoint written, and looks again every `idle`; ends
/// once the writer has.
async fn sign_checkpoints(
    mut sealer: Box<LogSealer>,
    publisher: Arc<Publisher>,
    mut written: watch::Receiver<LogPosition>,
    idle: Duration,
) -> Result<(), SealError> {
    loop {
        let position = *written.borrow_and_update();
        sealer.advance_to(position, &publisher).await?;
        tokio::select! {
            changed = written.changed() => {
                if changed.is_err() {
                    return sealer.finish().await;
                }
            }
            _ = tokio::time::sleep(idle) => {}
        }
    }
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
    let followers = relay.spawn_followers(settings.poll_interval);
    let published =
        publish_while_leading(&mut relay, &followers, &mut lock, settings, shutdown).await;
    // The signer is never cut short (between storing a checkpoint and
    // writing its state file, say): without the relay it finishes what it
    // does and ends.
    drop(relay);
    let followed = followers.finish().await;
    published?;
    followed
}

async fn publish_while_leading(
    relay: &mut Relay,
    followers: &Followers,
    lock: &mut PgConnection,
    settings: &RelaySettings,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut appended = PgListener::connect_with(&relay.pool).await?;
    appended.listen(event_log::EVENTS_APPENDED_CHANNEL).await?;
    let mut held_back_retry = HELD_BACK_RETRY;
    while !shutdown.is_triggered() && !followers.is_finished() {
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
