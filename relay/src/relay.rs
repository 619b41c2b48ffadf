//! The outbox relay: the event table is the outbox. The one active relay
//! (a PostgreSQL advisory lock) reads committed events in publishing order,
//! publishes each batch with publisher confirms, and only then advances its
//! checkpoint. A crash in between re-publishes; consumers are idempotent.

use std::sync::Arc;
use std::time::Duration;

use bus::{Envelope, Publisher, Topology};
use infra::broker::BrokerLink;
use infra::checkpoints::Checkpoint;
use infra::event_log::{self, LogPosition};
use infra::shutdown::Shutdown;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};

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

/// Publishes one batch at a time from a checkpoint.
pub struct Relay {
    pool: PgPool,
    publisher: Publisher,
    settings: RelaySettings,
    checkpoint: LogPosition,
    sealer: LogSealer,
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
        let publisher = Publisher::new(connection, &topology.exchange).await?;
        let checkpoint = RELAY_CHECKPOINT.load(&pool).await?;
        metrics::gauge!(crate::metrics::CHECKPOINT_POSITION).set(checkpoint.global_position as f64);
        let sealer = LogSealer::new(pool.clone(), settings.seal.clone());
        sealer.register_key().await?;
        Ok(Self {
            pool,
            publisher,
            settings,
            checkpoint,
            sealer,
        })
    }

    pub fn checkpoint(&self) -> LogPosition {
        self.checkpoint
    }

    /// Publishes the next batch and returns where it ends, without saving
    /// that as the checkpoint. `None` when nothing is ready to publish.
    pub async fn publish_next_batch(&mut self) -> anyhow::Result<Option<LogPosition>> {
        let mut batch =
            event_log::read_committed_after(&self.pool, self.checkpoint, self.settings.batch_size)
                .await?;
        let Some(last) = batch.last().map(LogPosition::of) else {
            return Ok(None);
        };
        for envelope in &mut batch {
            redact_secrets(envelope)?;
        }
        self.publisher.publish_batch(&batch).await?;
        metrics::counter!(crate::metrics::EVENTS_PUBLISHED).increment(batch.len() as u64);
        if let Some(newest) = batch.iter().map(|e| e.recorded_at).max() {
            let lag = (chrono::Utc::now() - newest).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::gauge!(crate::metrics::LAG).set(lag);
        }
        tracing::debug!(
            events = batch.len(),
            up_to = last.global_position,
            "published"
        );
        Ok(Some(last))
    }

    /// Saves where publishing got to, then folds the published events into
    /// the log's running hash.
    pub async fn save_checkpoint(&mut self, position: LogPosition) -> Result<(), SealError> {
        RELAY_CHECKPOINT.advance(&self.pool, position).await?;
        self.checkpoint = position;
        metrics::gauge!(crate::metrics::CHECKPOINT_POSITION).set(position.global_position as f64);
        self.sealer.advance_to(position, &self.publisher).await
    }

    /// Signs a checkpoint if one is due by time, when nothing was published.
    async fn seal_when_idle(&mut self) -> Result<(), SealError> {
        self.sealer
            .advance_to(self.checkpoint, &self.publisher)
            .await
    }

    /// What the checkpoint signer found, if it refuses to sign.
    pub fn signer_refusal(&self) -> Option<&crate::fold::Refusal> {
        self.sealer.refusal()
    }

    /// Publishes what is ready; true when it published something (more may wait).
    async fn drain_once(&mut self) -> anyhow::Result<bool> {
        let started = std::time::Instant::now();
        let Some(last) = self.publish_next_batch().await? else {
            metrics::gauge!(crate::metrics::LAG).set(0.0);
            return Ok(false);
        };
        self.save_checkpoint(last).await?;
        metrics::histogram!(crate::metrics::BATCH_DURATION).record(started.elapsed().as_secs_f64());
        Ok(true)
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
    let mut appended = PgListener::connect_with(pool).await?;
    appended.listen(event_log::EVENTS_APPENDED_CHANNEL).await?;
    let mut held_back_retry = HELD_BACK_RETRY;
    while !shutdown.is_triggered() {
        if relay.drain_once().await? {
            held_back_retry = HELD_BACK_RETRY;
            continue;
        }
        let wait = if event_log::has_rows_held_back(pool, relay.checkpoint()).await? {
            held_back_retry = (held_back_retry * 2).min(settings.poll_interval);
            held_back_retry / 2
        } else {
            settings.poll_interval
        };
        relay.seal_when_idle().await?;
        tokio::select! {
            notification = appended.recv() => { notification?; }
            _ = tokio::time::sleep(wait) => { still_locked(&mut lock).await?; }
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
