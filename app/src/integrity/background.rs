//! The standing verification behind `GET /v1/audit/verify`: one process at
//! a time (a PostgreSQL advisory lock) verifies the event store off the
//! request path, incrementally. Each run continues the running hash from
//! where the last one stopped (kept in `audit_verification`) up to the
//! newest signed checkpoint, then checks the events after it (the unproven
//! tail) without keeping that part, since checkpoints may still come for it.
//! A full pass (from the first event) starts when none has started for
//! `full_pass_every`, or when one is requested; an event changed after it was
//! verified is found by the next full pass (and at once by `api audit
//! verify`, which always recomputes everything).
//!
//! The checks are CPU work: each page runs on the blocking pool, and the
//! run pauses after each page as long as the page took, so it uses at most
//! about half a core and requests keep their latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use infra::event_log::LogPosition;
use infra::integrity::{checkpoints_after, PublicKeys};
use infra::shutdown::Shutdown;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::check::{FoldState, RunningFold};
use super::markers::Erasures;
use super::report::{Broken, UnprovenTail, VerifyReport};
use super::rows::{StoredRow, ROW_COLUMNS, ROW_WIDTH};
use super::store::{check_stored, erasures_on_record, public_keys, VERIFY_PAGE};
use crate::AppError;

/// `pg_try_advisory_lock(int, int)` keys: "aud\x01", then the verifier.
/// Held by the process whose run is verifying.
pub const VERIFIER_LOCK: (i32, i32) = (0x6175_6401, 1);

/// How often runs start, and how often a full pass does.
#[derive(Clone, Copy, Debug)]
pub struct VerifierSettings {
    pub interval: Duration,
    pub full_pass_every: TimeDelta,
}

/// What the standing verification has found, as stored between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StandingState {
    /// When the current pass started from the first event.
    pub pass_started_at: Option<DateTime<Utc>>,
    /// When the current pass first reached the newest checkpoint.
    pub pass_completed_at: Option<DateTime<Utc>>,
    /// When the last run ended.
    pub verified_at: Option<DateTime<Utc>>,
    /// Events folded and checked by this pass (up to the newest checkpoint).
    pub events_folded: u64,
    /// Events after the newest checkpoint, checked by the last run.
    pub tail_checked: u64,
    pub fold: FoldState,
    pub first_broken: Option<Broken>,
}

impl StandingState {
    fn new_pass(now: DateTime<Utc>) -> Self {
        Self {
            pass_started_at: Some(now),
            ..Self::default()
        }
    }

    /// The report of what is verified so far; `ok` only once a pass has
    /// reached the newest checkpoint and found nothing broken.
    pub fn report(&self) -> VerifyReport {
        let mut report = VerifyReport {
            events_checked: self.events_folded + self.tail_checked,
            checkpoints_checked: self.fold.checkpoints_checked,
            first_broken: self.first_broken.clone(),
            ..VerifyReport::default()
        };
        let proven = self.fold.proven.as_ref();
        report.events_proven = proven.map_or(0, |c| c.event_count.max(0) as u64);
        report.unproven_tail = Some(UnprovenTail {
            after_transaction_id: proven.map(|c| c.transaction_id),
            after_global_position: proven.map(|c| c.global_position),
            events: report.events_checked.saturating_sub(report.events_proven),
        });
        report.ok = self.pass_completed_at.is_some() && self.first_broken.is_none();
        report
    }
}

/// The stored state, and whether a full pass was requested.
pub async fn standing_state(pool: &PgPool) -> Result<(Option<StandingState>, bool), AppError> {
    let row: Option<(sqlx::types::Json<StandingState>, bool)> =
        sqlx::query_as("SELECT state, full_pass_requested FROM audit_verification")
            .fetch_optional(pool)
            .await?;
    Ok(match row {
        Some((state, requested)) => (Some(state.0), requested),
        None => (None, false),
    })
}

/// Asks for a full pass: the next run starts from the first event.
pub async fn request_full_pass(pool: &PgPool) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO audit_verification (state, full_pass_requested) VALUES ('{}', true) \
         ON CONFLICT (singleton) DO UPDATE SET full_pass_requested = true, updated_at = now()",
    )
    .execute(pool)
    .await?;
    Ok(())
}

async fn store_state(pool: &PgPool, state: &StandingState) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO audit_verification (state) VALUES ($1) \
         ON CONFLICT (singleton) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
    )
    .bind(sqlx::types::Json(state))
    .execute(pool)
    .await?;
    Ok(())
}

/// Starts a pass from the first event, clearing the request (a request
/// made after this point asks for the pass after this one).
async fn start_pass(pool: &PgPool, state: &StandingState) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO audit_verification (state) VALUES ($1) \
         ON CONFLICT (singleton) DO UPDATE \
         SET state = EXCLUDED.state, full_pass_requested = false, updated_at = now()",
    )
    .bind(sqlx::types::Json(state))
    .execute(pool)
    .await?;
    Ok(())
}

pub struct BackgroundVerifier {
    pool: PgPool,
    settings: VerifierSettings,
    shutdown: Shutdown,
}

impl BackgroundVerifier {
    pub fn new(pool: PgPool, settings: VerifierSettings, shutdown: Shutdown) -> Self {
        Self {
            pool,
            settings,
            shutdown,
        }
    }

    /// Runs every `interval` until shutdown.
    pub async fn run_until_stopped(self) {
        while !self.shutdown.is_triggered() {
            if let Err(error) = self.run_once().await {
                tracing::warn!(error = %error, "audit verification run failed; retried next interval");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.interval) => {}
                _ = self.shutdown.wait() => {}
            }
        }
    }

    /// One run, unless another process holds the verifier's lock: whether
    /// it ran.
    pub async fn run_once(&self) -> Result<bool, AppError> {
        let mut lock = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(VERIFIER_LOCK.0)
            .bind(VERIFIER_LOCK.1)
            .fetch_one(&mut *lock)
            .await?;
        if !locked {
            return Ok(false);
        }
        let result = self.run_locked().await;
        // Closing the connection would release it too.
        sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(VERIFIER_LOCK.0)
            .bind(VERIFIER_LOCK.1)
            .execute(&mut *lock)
            .await?;
        result.map(|()| true)
    }

    async fn run_locked(&self) -> Result<(), AppError> {
        let now = Utc::now();
        let (stored, requested) = standing_state(&self.pool).await?;
        let due = |state: &StandingState| {
            state
                .pass_started_at
                .is_none_or(|started| now - started >= self.settings.full_pass_every)
        };
        let mut state = match stored {
            Some(state) if !requested && !due(&state) => state,
            _ => {
                let state = StandingState::new_pass(now);
                start_pass(&self.pool, &state).await?;
                state
            }
        };
        if state.first_broken.is_some() {
            // Broken stays broken until the next full pass looks again.
            return Ok(());
        }
        let keys = public_keys(&self.pool).await?;
        let erasures = Arc::new(erasures_on_record(&self.pool).await?);
        self.fold_to_newest_checkpoint(&mut state, keys, erasures.clone())
            .await?;
        if state.first_broken.is_none() {
            self.check_tail(&mut state, erasures).await?;
        }
        state.verified_at = Some(Utc::now());
        if state.first_broken.is_none() && state.pass_completed_at.is_none() {
            state.pass_completed_at = state.verified_at;
        }
        store_state(&self.pool, &state).await
    }

    /// Folds and checks every event up to the newest signed checkpoint,
    /// storing the state after each page (a run that stops resumes there).
    async fn fold_to_newest_checkpoint(
        &self,
        state: &mut StandingState,
        keys: PublicKeys,
        erasures: Arc<Erasures>,
    ) -> Result<(), AppError> {
        let after = position(state.fold.last);
        let pending = checkpoints_after(&self.pool, after).await?;
        let fold = RunningFold::resume(state.fold.clone(), pending, keys);
        let Some(until) = fold.last_checkpoint() else {
            return Ok(());
        };
        let Some(mut fold) = self.walk(state, Some(fold), Some(until), erasures).await? else {
            return Ok(());
        };
        // Every checkpoint loaded must have been passed: one whose event is
        // gone was not.
        if let Err(broken) = fold.finish() {
            state.first_broken = Some(broken);
        }
        Ok(())
    }

    /// Checks the events after the newest checkpoint, which no signature
    /// covers yet: each event's hash, seal and link; nothing of it is kept.
    async fn check_tail(
        &self,
        state: &mut StandingState,
        erasures: Arc<Erasures>,
    ) -> Result<(), AppError> {
        state.tail_checked = 0;
        self.walk(state, None, None, erasures).await.map(drop)
    }

    /// Checks the events after the fold's last one, up to `until` (or the
    /// last event), a page at a time; with a fold, folds them too and
    /// stores the state after each page. Stops at the first break (then
    /// and at shutdown without the fold); with it once every event is read.
    async fn walk(
        &self,
        state: &mut StandingState,
        mut fold: Option<RunningFold>,
        until: Option<LogPosition>,
        erasures: Arc<Erasures>,
    ) -> Result<Option<RunningFold>, AppError> {
        let mut after = position(state.fold.last);
        loop {
            let started = Instant::now();
            let rows = page(&self.pool, after, until).await?;
            let read = rows.len() as i64;
            if let Some(last) = rows.last() {
                after = StoredRow::position(last)?;
            }
            let erasures = erasures.clone();
            let (returned, checked) =
                tokio::task::spawn_blocking(move || check_rows(&rows, &erasures, fold))
                    .await
                    .map_err(|error| AppError::Unexpected(error.into()))??;
            fold = returned;
            match &fold {
                Some(fold) => {
                    state.events_folded += checked.events;
                    state.fold = fold.state();
                }
                None => state.tail_checked += checked.events,
            }
            if checked.broken.is_some() {
                state.first_broken = checked.broken;
                return Ok(None);
            }
            if fold.is_some() {
                store_state(&self.pool, state).await?;
            }
            if read < VERIFY_PAGE {
                return Ok(fold);
            }
            if self.shutdown.is_triggered() {
                return Ok(None);
            }
            tokio::time::sleep(started.elapsed()).await;
        }
    }
}

fn position((transaction_id, global_position): (i64, i64)) -> LogPosition {
    LogPosition {
        transaction_id,
        global_position,
    }
}

/// Up to a page of events after `after` (up to `until`, if given) in
/// publishing order, each with the sequence and hash of the event before
/// it in its stream (after its [`ROW_COLUMNS`], null for the first): one
/// query.
async fn page(
    pool: &PgPool,
    after: LogPosition,
    until: Option<LogPosition>,
) -> Result<Vec<PgRow>, AppError> {
    let until = until.unwrap_or(LogPosition {
        transaction_id: i64::MAX,
        global_position: i64::MAX,
    });
    let sql = format!(
        "SELECT {ROW_COLUMNS}, p.sequence AS previous_sequence, p.hash AS previous_hash \
         FROM events e LEFT JOIN events p ON p.aggregate_type = e.aggregate_type \
           AND p.aggregate_id = e.aggregate_id AND p.sequence = e.sequence - 1 \
         WHERE (e.transaction_id, e.global_position) > ($1::text::xid8, $2) \
           AND (e.transaction_id, e.global_position) <= ($3::text::xid8, $4) \
         ORDER BY e.transaction_id, e.global_position LIMIT $5"
    );
    Ok(sqlx::query(&sql)
        .bind(after.transaction_id)
        .bind(after.global_position)
        .bind(until.transaction_id)
        .bind(until.global_position)
        .bind(VERIFY_PAGE)
        .fetch_all(pool)
        .await?)
}

/// What a page's checks found.
struct Checked {
    events: u64,
    broken: Option<Broken>,
}

/// Checks each event of the page (and folds its hash, given a fold);
/// stops at the first break.
fn check_rows(
    rows: &[PgRow],
    erasures: &Erasures,
    mut fold: Option<RunningFold>,
) -> Result<(Option<RunningFold>, Checked), AppError> {
    let mut checked = Checked {
        events: 0,
        broken: None,
    };
    for row in rows {
        let stored = StoredRow::read(row)?;
        let previous_sequence: Option<i64> = row.try_get(ROW_WIDTH)?;
        let previous_hash: Option<&str> = row.try_get(ROW_WIDTH + 1)?;
        checked.events += 1;
        let result = stored.record().and_then(|record| {
            check_stored(&record, previous_sequence.zip(previous_hash), erasures)?;
            match fold.as_mut() {
                Some(fold) => fold.fold(record.position, record.event.hash),
                None => Ok(()),
            }
        });
        if let Err(broken) = result {
            checked.broken = Some(broken);
            break;
        }
    }
    Ok((fold, checked))
}
