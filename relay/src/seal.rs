//! The checkpoint signer. It signs only what it has checked: from the last
//! checkpoint it signed (remembered in a state file beside its key, outside
//! the database) it recomputes every later event's hash from its stored
//! fields, checks its link to the previous event of its stream, folds the
//! running hash itself and compares every checkpoint it passes. It never
//! reads a running hash or head from a table. On any disagreement, or when
//! the log does not extend what it last signed, it signs nothing, logs the
//! first broken event, sets `audit_signer_refusing` and says so in
//! `/health/ready`, until the log is repaired or an operator acknowledges
//! it (`api audit acknowledge`). Each checkpoint it signs is stored, then
//! published to the broker, then written to the state file once the broker
//! has confirmed it and every one before it; it checks and folds on while
//! confirms are outstanding (they come after every event queued before).

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bus::{PendingDocument, Publisher};
use chrono::{DurationRound, TimeDelta, Utc};
use ed25519_dalek::SigningKey;
use futures_util::FutureExt;
use infra::event_log::LogPosition;
use infra::health::SignerHealth;
use infra::integrity::{
    key_id, running_hash, Checkpoint, CheckpointLine, PublicKeys, SignerState, SignerStateFile,
    CHECKPOINT_COLUMNS, CHECKPOINT_ROUTING_KEY,
};
use sqlx::PgPool;

use crate::fold::{self, FoldedEvent, Refusal, RefusalReason};

/// Events read per query while folding.
const FOLD_PAGE: i64 = 1000;
/// Signed checkpoints whose confirms are outstanding, at most.
const MAX_UNCONFIRMED: usize = 16;
/// How soon a refusing signer looks at the log again.
const REFUSAL_RETRY: Duration = Duration::from_secs(3);

/// When the relay signs a checkpoint, with which key, and where it
/// remembers what it signed.
#[derive(Clone, Debug)]
pub struct SealSettings {
    pub key: Arc<SigningKey>,
    /// After this many events since the last checkpoint.
    pub every_events: i64,
    /// Or after this long, if any event came since the last checkpoint.
    pub every: Duration,
    /// The state file (`infra::integrity::signer_state_file` of the key file).
    pub state_file: PathBuf,
    /// Where the signer reports whether it signs (`/health/ready`).
    pub health: SignerHealth,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("reading or writing the event store")]
    Database(#[from] sqlx::Error),
    #[error("publishing a checkpoint")]
    Broker(#[from] bus::BusError),
    #[error("writing the signer state file")]
    State(#[from] infra::integrity::SignerStateError),
}

/// Where the checked fold stands.
#[derive(Debug)]
struct Fold {
    /// The state it started from; a different state on disk (an operator's
    /// acknowledgement) starts a new fold.
    base: Option<Checkpoint>,
    position: LogPosition,
    running_hash: String,
    event_count: i64,
    /// The newest checkpoint signed or passed.
    last: Option<Checkpoint>,
}

impl Fold {
    fn from(base: Option<Checkpoint>) -> Self {
        Self {
            position: base
                .as_ref()
                .map_or_else(LogPosition::default, Checkpoint::position),
            running_hash: base
                .as_ref()
                .map_or_else(String::new, |c| c.running_hash.clone()),
            event_count: base.as_ref().map_or(0, |c| c.event_count),
            last: base.clone(),
            base,
        }
    }

    fn since_last(&self) -> i64 {
        self.event_count - self.last.as_ref().map_or(0, |c| c.event_count)
    }
}

pub struct LogSealer {
    pool: PgPool,
    settings: SealSettings,
    state_file: SignerStateFile,
    health: SignerHealth,
    fold: Option<Fold>,
    refused: Option<(Instant, Refusal)>,
    /// Checkpoints signed, stored and sent to the broker whose confirms are
    /// outstanding, oldest first: the state file names one once it and
    /// every one before it are confirmed. Checking, folding and signing go
    /// on meanwhile.
    unconfirmed: VecDeque<(Checkpoint, Confirm)>,
}

/// A checkpoint's confirm, polled in place.
type Confirm = Pin<Box<dyn Future<Output = Result<(), bus::BusError>> + Send + Sync>>;

enum Outcome {
    Sealed,
    Refused(Refusal),
}

impl LogSealer {
    pub fn new(pool: PgPool, settings: SealSettings) -> Self {
        let state_file = SignerStateFile::new(settings.state_file.clone());
        let health = settings.health.clone();
        Self {
            pool,
            settings,
            state_file,
            health,
            fold: None,
            refused: None,
            unconfirmed: VecDeque::new(),
        }
    }

    /// Lists the key's public half, so verifiers can find it by id.
    pub async fn register_key(&self) -> sqlx::Result<()> {
        let public = self.settings.key.verifying_key();
        sqlx::query(
            "INSERT INTO audit_signing_keys (key_id, public_key) VALUES ($1, $2) \
             ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(key_id(&public))
        .bind(STANDARD.encode(public.as_bytes()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What the signer found, if it refuses to sign.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.refused.as_ref().map(|(_, refusal)| refusal)
    }

    /// Checks and folds every event up to `published` not folded yet, and
    /// signs (and publishes) a checkpoint when one is due. A refusal is not
    /// an error: publishing goes on, signing stops.
    pub async fn advance_to(
        &mut self,
        published: LogPosition,
        publisher: &Publisher,
    ) -> Result<(), SealError> {
        if let Some((at, _)) = &self.refused {
            if at.elapsed() < REFUSAL_RETRY {
                return Ok(());
            }
        }
        match self.seal(published, publisher).await? {
            Outcome::Sealed => {
                if self.refused.take().is_some() {
                    tracing::info!("the audit log checks again; signing checkpoints");
                }
                self.health.signing();
                metrics::gauge!(crate::metrics::SIGNER_REFUSING).set(0.0);
            }
            Outcome::Refused(refusal) => {
                let new = self.refusal() != Some(&refusal);
                if new {
                    tracing::error!(
                        reason = ?refusal.reason,
                        aggregate_type = refusal.aggregate_type.as_deref(),
                        aggregate_id = refusal.aggregate_id.as_deref(),
                        sequence = refusal.sequence,
                        global_position = refusal.global_position,
                        detail = %refusal.detail,
                        "the audit log does not check: no checkpoint is signed"
                    );
                }
                self.health
                    .refusing(serde_json::to_value(&refusal).expect("a refusal always serializes"));
                metrics::gauge!(crate::metrics::SIGNER_REFUSING).set(1.0);
                self.fold = None;
                self.refused = Some((Instant::now(), refusal));
            }
        }
        Ok(())
    }

    async fn seal(
        &mut self,
        published: LogPosition,
        publisher: &Publisher,
    ) -> Result<Outcome, SealError> {
        let state = match self.state_file.load() {
            Ok(state) => state.unwrap_or_default(),
            Err(error) => {
                return Ok(Outcome::Refused(Refusal::new(
                    RefusalReason::StateUnreadable,
                    None,
                    error.to_string(),
                )))
            }
        };
        let mut fold = match self.fold.take() {
            Some(fold) if fold.base == state.last_signed => fold,
            _ => {
                if let Err(refusal) = self.extends(state.last_signed.as_ref()).await? {
                    return Ok(Outcome::Refused(refusal));
                }
                Fold::from(state.last_signed)
            }
        };
        let outcome = self.fold_up_to(&mut fold, published, publisher).await?;
        match outcome {
            Outcome::Sealed => self.fold = Some(fold),
            // What it signed before it found the defect stands.
            Outcome::Refused(_) => self.confirmed(&mut fold).await?,
        }
        Ok(outcome)
    }

    /// Whether the database still holds `last_signed` unchanged.
    async fn extends(&self, last_signed: Option<&Checkpoint>) -> sqlx::Result<Result<(), Refusal>> {
        let Some(last_signed) = last_signed else {
            return Ok(Ok(()));
        };
        let stored = checkpoint_at(&self.pool, last_signed.position()).await?;
        if stored.as_ref() == Some(last_signed) {
            return Ok(Ok(()));
        }
        Ok(Err(Refusal::new(
            RefusalReason::StateNotExtended,
            Some(last_signed.global_position),
            format!(
                "the checkpoint this signer last signed ({} events, at position {}) is {} in \
                 the database; acknowledge with `api audit acknowledge` once understood",
                last_signed.event_count,
                last_signed.global_position,
                if stored.is_some() {
                    "altered"
                } else {
                    "missing"
                }
            ),
        )))
    }

    async fn fold_up_to(
        &mut self,
        fold: &mut Fold,
        published: LogPosition,
        publisher: &Publisher,
    ) -> Result<Outcome, SealError> {
        let keys = self.trusted_keys().await?;
        loop {
            let started = Instant::now();
            let page = if fold.position < published {
                fold::events_between(&self.pool, fold.position, published, FOLD_PAGE).await?
            } else {
                Vec::new()
            };
            let read = started.elapsed();
            let page_end = page.last().map(FoldedEvent::position);
            let mut passed: VecDeque<Checkpoint> = match page_end {
                Some(end) => checkpoints_between(&self.pool, fold.position, end).await?,
                None => VecDeque::new(),
            };
            for event in &page {
                if let Err(refusal) = event.check() {
                    return Ok(Outcome::Refused(refusal));
                }
                if let Some(missing) = passed.front().filter(|c| c.position() < event.position()) {
                    return Ok(Outcome::Refused(Refusal::new(
                        RefusalReason::CheckpointEventMissing,
                        Some(missing.global_position),
                        "a checkpoint names a position that holds no event".to_owned(),
                    )));
                }
                fold.running_hash =
                    running_hash(&fold.running_hash, &event.event.hash, event.position());
                fold.event_count += 1;
                fold.position = event.position();
                if let Some(checkpoint) = passed.front().filter(|c| c.position() == fold.position) {
                    if let Err(refusal) = pass(fold, checkpoint, &keys) {
                        return Ok(Outcome::Refused(refusal));
                    }
                    self.confirmed(fold).await?;
                    fold.last = passed.pop_front();
                    self.remember(fold)?;
                }
                if fold.since_last() >= self.settings.every_events {
                    if let Some(refusal) = self.sign(fold, publisher, &keys).await? {
                        return Ok(Outcome::Refused(refusal));
                    }
                }
            }
            if !page.is_empty() {
                let folded = started.elapsed();
                self.show_progress(fold).await?;
                tracing::debug!(
                    events = page.len(),
                    read_us = read.as_micros() as u64,
                    fold_us = folded.as_micros() as u64,
                    "signer folded a page"
                );
            }
            if (page.len() as i64) < FOLD_PAGE {
                break;
            }
        }
        if fold.since_last() > 0 && self.time_is_up(fold.last.as_ref()) {
            if let Some(refusal) = self.sign(fold, publisher, &keys).await? {
                return Ok(Outcome::Refused(refusal));
            }
        }
        if fold.position >= published {
            // Caught up: the checkpoint signed last is confirmed and
            // remembered before the signer waits for more.
            self.confirmed(fold).await?;
        }
        Ok(Outcome::Sealed)
    }

    /// The listed keys and the signer's own: a checkpoint passed must be
    /// signed by one of them (and match the fold, which is what counts).
    async fn trusted_keys(&self) -> sqlx::Result<PublicKeys> {
        let mut keys = PublicKeys::default();
        let listed: Vec<String> = sqlx::query_scalar("SELECT public_key FROM audit_signing_keys")
            .fetch_all(&self.pool)
            .await?;
        for key in listed {
            // A malformed listed key verifies nothing.
            let _ = keys.insert_base64(&key);
        }
        keys.insert(self.settings.key.verifying_key());
        Ok(keys)
    }

    fn time_is_up(&self, last: Option<&Checkpoint>) -> bool {
        let every = TimeDelta::from_std(self.settings.every).unwrap_or(TimeDelta::MAX);
        last.is_none_or(|last| Utc::now() - last.created_at >= every)
    }

    /// Signs where the fold stands, after checking that the newest
    /// checkpoint in the database is the one the fold last passed or signed.
    async fn sign(
        &mut self,
        fold: &mut Fold,
        publisher: &Publisher,
        keys: &PublicKeys,
    ) -> Result<Option<Refusal>, SealError> {
        self.settle(fold).await?;
        let newest = newest_checkpoint(&self.pool).await?;
        if newest != fold.last {
            return Ok(Some(Refusal::new(
                RefusalReason::StateNotExtended,
                newest.as_ref().map(|c| c.global_position),
                "the newest checkpoint in the database is not the one this signer last signed \
                 or checked"
                    .to_owned(),
            )));
        }
        if let Some(Err(error)) = newest.as_ref().map(|c| c.verify(keys)) {
            return Ok(Some(Refusal::new(
                RefusalReason::BadSignature,
                newest.as_ref().map(|c| c.global_position),
                error.to_string(),
            )));
        }
        // PostgreSQL keeps microseconds: sign what will be read back.
        let created_at = Utc::now()
            .duration_trunc(TimeDelta::microseconds(1))
            .expect("a microsecond divides any time");
        let checkpoint = Checkpoint::sign(
            &self.settings.key,
            (fold.position.transaction_id, fold.position.global_position),
            fold.running_hash.clone(),
            fold.event_count,
            created_at,
        );
        store_checkpoint(&self.pool, &checkpoint).await?;
        metrics::counter!(crate::metrics::CHECKPOINTS_WRITTEN).increment(1);
        let confirm = send(publisher, &checkpoint).await?.confirmed();
        self.unconfirmed
            .push_back((checkpoint.clone(), Box::pin(confirm)));
        fold.last = Some(checkpoint);
        Ok(None)
    }

    /// Confirms and remembers the checkpoint signed last, if its confirm is
    /// outstanding: what the signer does before it stops.
    pub async fn finish(&mut self) -> Result<(), SealError> {
        if let Some(mut fold) = self.fold.take() {
            self.confirmed(&mut fold).await?;
            self.fold = Some(fold);
        }
        Ok(())
    }

    /// Waits for every outstanding confirm, then writes the newest
    /// checkpoint signed (`fold.last`) to the state file: a checkpoint is
    /// stored, then published, then remembered.
    async fn confirmed(&mut self, fold: &mut Fold) -> Result<(), SealError> {
        if self.unconfirmed.is_empty() {
            return Ok(());
        }
        let waiting = Instant::now();
        while let Some((_, confirm)) = self.unconfirmed.pop_front() {
            confirm.await?;
        }
        self.remember(fold)?;
        tracing::debug!(
            confirm_us = waiting.elapsed().as_micros() as u64,
            "checkpoints confirmed and remembered"
        );
        Ok(())
    }

    /// Takes the checkpoints confirmed by now off the outstanding ones (and
    /// waits for the oldest while too many are) and writes the newest of
    /// them to the state file.
    async fn settle(&mut self, fold: &mut Fold) -> Result<(), SealError> {
        let mut newest_confirmed = None;
        loop {
            let crowded = self.unconfirmed.len() >= MAX_UNCONFIRMED;
            let Some((_, confirm)) = self.unconfirmed.front_mut() else {
                break;
            };
            if crowded {
                confirm.await?;
            } else {
                match confirm.now_or_never() {
                    Some(confirmed) => confirmed?,
                    None => break,
                }
            }
            newest_confirmed = self
                .unconfirmed
                .pop_front()
                .map(|(checkpoint, _)| checkpoint);
        }
        if let Some(checkpoint) = newest_confirmed {
            let state = SignerState {
                last_signed: Some(checkpoint),
            };
            self.state_file.store(&state)?;
            fold.base = state.last_signed;
        }
        Ok(())
    }

    /// Writes the newest checkpoint signed or passed to the state file.
    fn remember(&self, fold: &mut Fold) -> Result<(), SealError> {
        let state = SignerState {
            last_signed: fold.last.clone(),
        };
        self.state_file.store(&state)?;
        fold.base = state.last_signed;
        Ok(())
    }

    /// `audit_chain_head` shows where the fold stands (for operators and
    /// the bench; nothing reads it back to sign).
    async fn show_progress(&self, fold: &Fold) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE audit_chain_head SET transaction_id = $1, global_position = $2, \
             running_hash = $3, event_count = $4, updated_at = now()",
        )
        .bind(fold.position.transaction_id)
        .bind(fold.position.global_position)
        .bind(&fold.running_hash)
        .bind(fold.event_count)
        .execute(&self.pool)
        .await?;
        metrics::gauge!(crate::metrics::CHAIN_EVENTS).set(fold.event_count as f64);
        Ok(())
    }
}

/// A checkpoint the fold reached must match it and verify.
fn pass(fold: &Fold, checkpoint: &Checkpoint, keys: &PublicKeys) -> Result<(), Refusal> {
    if checkpoint.running_hash != fold.running_hash || checkpoint.event_count != fold.event_count {
        return Err(Refusal::new(
            RefusalReason::CheckpointMismatch,
            Some(checkpoint.global_position),
            format!(
                "the checkpoint signs {} events, {} were folded up to it",
                checkpoint.event_count, fold.event_count
            ),
        ));
    }
    checkpoint.verify(keys).map_err(|error| {
        Refusal::new(
            RefusalReason::BadSignature,
            Some(checkpoint.global_position),
            error.to_string(),
        )
    })
}

/// Publishes a signed checkpoint for witnesses (`audit.checkpoint`); its
/// confirm is awaited later.
async fn send(
    publisher: &Publisher,
    checkpoint: &Checkpoint,
) -> Result<PendingDocument, bus::BusError> {
    let line = CheckpointLine {
        checkpoint: checkpoint.clone(),
    };
    publisher
        .send_document(
            CHECKPOINT_ROUTING_KEY,
            &checkpoint.message_id(),
            line.to_json().as_bytes(),
        )
        .await
}

async fn checkpoint_at(pool: &PgPool, at: LogPosition) -> sqlx::Result<Option<Checkpoint>> {
    sqlx::query_as(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints \
         WHERE transaction_id = $1 AND global_position = $2"
    ))
    .bind(at.transaction_id)
    .bind(at.global_position)
    .fetch_optional(pool)
    .await
}

async fn newest_checkpoint(pool: &PgPool) -> sqlx::Result<Option<Checkpoint>> {
    sqlx::query_as(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints \
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
    ))
    .fetch_optional(pool)
    .await
}

/// The checkpoints after `after`, up to and including `up_to`, in order.
async fn checkpoints_between(
    pool: &PgPool,
    after: LogPosition,
    up_to: LogPosition,
) -> sqlx::Result<VecDeque<Checkpoint>> {
    let rows: Vec<Checkpoint> = sqlx::query_as(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints \
         WHERE (transaction_id, global_position) > ($1, $2) \
           AND (transaction_id, global_position) <= ($3, $4) \
         ORDER BY transaction_id, global_position"
    ))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(up_to.transaction_id)
    .bind(up_to.global_position)
    .fetch_all(pool)
    .await?;
    Ok(rows.into())
}

async fn store_checkpoint(pool: &PgPool, checkpoint: &Checkpoint) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO audit_checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(checkpoint.transaction_id)
    .bind(checkpoint.global_position)
    .bind(&checkpoint.running_hash)
    .bind(checkpoint.event_count)
    .bind(checkpoint.created_at)
    .bind(&checkpoint.key_id)
    .bind(&checkpoint.signature)
    .execute(pool)
    .await?;
    Ok(())
}
