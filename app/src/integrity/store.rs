//! Verifying the event store itself: every stream in sequence order (each
//! event's seal and its link to the one before), and, at the same time on a
//! second connection, every event's hash in publishing order against the
//! signed checkpoints. Each page is its own short query: nothing is locked.
//! The next page is read while a blocking thread checks the last one, and
//! memory holds at most [`PAGES_AHEAD`] pages besides.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use infra::event_log::{self, LogPosition};
use infra::integrity::{stored_checkpoints, Checkpoint, PublicKeys};
use sqlx::postgres::PgRow;
use sqlx::PgPool;
use tokio::sync::mpsc;

use cqrs_es::Aggregate;
use domain::{Session, SessionEvent, User, UserEvent};

use super::check::{match_trusted, RunningFold, SealedRecord};
use super::markers::{erased_values, Erasures};
use super::report::{Broken, VerifyReport};
use super::rows::{StoredRow, ROW_COLUMNS};
use crate::AppError;

/// Events read per query.
pub(super) const VERIFY_PAGE: i64 = 1000;
/// Pages read ahead of the checks.
const PAGES_AHEAD: usize = 2;

/// A checkpoint signing key's public half, as the relay listed it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ListedKey {
    pub key_id: String,
    /// Base64 of the key's 32 bytes.
    pub public_key: String,
    pub created_at: DateTime<Utc>,
}

/// Every checkpoint signing key ever used, oldest first (`GET /v1/audit/keys`).
pub async fn listed_keys(pool: &PgPool) -> Result<Vec<ListedKey>, AppError> {
    Ok(sqlx::query_as(
        "SELECT key_id, public_key, created_at FROM audit_signing_keys ORDER BY created_at, key_id",
    )
    .fetch_all(pool)
    .await?)
}

/// The listed keys as verifiers use them.
pub async fn public_keys(pool: &PgPool) -> Result<PublicKeys, AppError> {
    let mut keys = PublicKeys::default();
    for listed in listed_keys(pool).await? {
        // A malformed stored key verifies nothing; its checkpoints then fail.
        let _ = keys.insert_base64(&listed.public_key);
    }
    Ok(keys)
}

/// Verifies every stream and every checkpoint, with `keys` (the database's
/// own list when `None`); every `trusted` checkpoint (held outside the
/// database) must be in the log unchanged.
pub async fn verify_store(
    pool: &PgPool,
    keys: Option<PublicKeys>,
    trusted: &[Checkpoint],
) -> Result<VerifyReport, AppError> {
    let keys = match keys {
        Some(keys) => keys,
        None => public_keys(pool).await?,
    };
    let erasures = Arc::new(erasures_on_record(pool).await?);
    let (streams, checkpoints) = tokio::join!(
        verify_streams(pool, erasures),
        verify_checkpoints(pool, keys, trusted)
    );
    let mut report = VerifyReport::default();
    let streams = streams?;
    report.events_checked = streams.events;
    if let Some(broken) = streams.broken {
        // A broken event is named before any checkpoint.
        report.broken(broken);
        return Ok(report.finish());
    }
    checkpoints?.into_report(&mut report);
    Ok(report.finish())
}

/// Every user erased, and the sessions each of them started.
pub(super) async fn erasures_on_record(pool: &PgPool) -> Result<Erasures, AppError> {
    let erased: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE aggregate_type = $1 AND event_type = $2",
    )
    .bind(User::TYPE)
    .bind(UserEvent::ERASED.name())
    .fetch_all(pool)
    .await?;
    // Constants, not input, are written into the text (as the erasure does).
    let sql = format!(
        "SELECT aggregate_id, {user} FROM events \
         WHERE aggregate_type = $1 AND event_type = $2 AND ({user}) = ANY($3)",
        user = SessionEvent::STARTED_USER_ID.json_text(),
    );
    let sessions: Vec<(String, String)> = sqlx::query_as(&sql)
        .bind(Session::TYPE)
        .bind(SessionEvent::STARTED.name())
        .bind(&erased)
        .fetch_all(pool)
        .await?;
    let mut erasures = Erasures::default();
    for user_id in erased {
        erasures.user_erased(user_id);
    }
    for (session_id, user_id) in sessions {
        erasures.session_started(session_id, user_id);
    }
    Ok(erasures)
}

/// One stored event: its hash and seal, the marker rules, and its link to
/// `before` (the event before it in its stream, if any).
pub(super) fn check_stored(
    record: &SealedRecord<'_>,
    before: Option<(i64, &str)>,
    erasures: &Erasures,
) -> Result<(), Broken> {
    let withheld = record.check()?;
    let erased = erased_values(record, withheld, false)?;
    match erased.into_iter().find(|value| !erasures.covers(value)) {
        Some(unexpected) => Err(unexpected.broken),
        None => record.check_link(before),
    }
}

/// What the walk of the streams found: the events checked, up to and
/// including the first broken one.
#[derive(Default)]
struct StreamsChecked {
    events: u64,
    broken: Option<Broken>,
    /// The last event checked: `(aggregate_type, aggregate_id, sequence, hash)`.
    last: Option<(String, String, i64, String)>,
}

impl StreamsChecked {
    /// Checks each event of `page`, which follows the last one checked in
    /// stream order; stops at the first break.
    fn check_page(&mut self, page: &[PgRow], erasures: &Erasures) -> Result<(), AppError> {
        let mut previous = self
            .last
            .as_ref()
            .map(|(t, i, sequence, hash)| (t.as_str(), i.as_str(), *sequence, hash.as_str()));
        for row in page {
            let stored = StoredRow::read(row)?;
            let event = &stored.event;
            let before = previous
                .filter(|(t, i, _, _)| *t == event.aggregate_type && *i == event.aggregate_id)
                .map(|(_, _, sequence, hash)| (sequence, hash));
            self.events += 1;
            let checked = stored
                .record()
                .and_then(|record| check_stored(&record, before, erasures));
            previous = Some((
                event.aggregate_type,
                event.aggregate_id,
                event.sequence,
                event.hash,
            ));
            if let Err(broken) = checked {
                self.broken = Some(broken);
                break;
            }
        }
        let last = previous
            .map(|(t, i, sequence, hash)| (t.to_owned(), i.to_owned(), sequence, hash.to_owned()));
        self.last = last;
        Ok(())
    }
}

/// Every stream in sequence order, read a page ahead of a blocking thread
/// that checks them.
async fn verify_streams(
    pool: &PgPool,
    erasures: Arc<Erasures>,
) -> Result<StreamsChecked, AppError> {
    let (pages, mut to_check) = mpsc::channel::<Vec<PgRow>>(PAGES_AHEAD);
    let checker = tokio::task::spawn_blocking(move || {
        let mut checked = StreamsChecked::default();
        while let Some(page) = to_check.blocking_recv() {
            checked.check_page(&page, &erasures)?;
            if checked.broken.is_some() {
                break;
            }
        }
        Ok::<_, AppError>(checked)
    });
    let read = read_streams(pool, pages).await;
    let checked = checker
        .await
        .map_err(|error| AppError::Unexpected(error.into()))??;
    read?;
    Ok(checked)
}

/// Sends every page of events in stream order to `pages`, until the last
/// page or until the checks stop taking them.
async fn read_streams(pool: &PgPool, pages: mpsc::Sender<Vec<PgRow>>) -> Result<(), AppError> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM events e \
         WHERE (e.aggregate_type, e.aggregate_id, e.sequence) > ($1, $2, $3) \
         ORDER BY e.aggregate_type, e.aggregate_id, e.sequence LIMIT $4"
    );
    let mut after = (String::new(), String::new(), 0);
    loop {
        let page = sqlx::query(&sql)
            .bind(&after.0)
            .bind(&after.1)
            .bind(after.2)
            .bind(VERIFY_PAGE)
            .fetch_all(pool)
            .await?;
        let full = page.len() as i64 == VERIFY_PAGE;
        if let Some(last) = page.last() {
            after = StoredRow::stream_key(last)?;
        }
        if pages.send(page).await.is_err() || !full {
            return Ok(());
        }
    }
}

/// What the checks of the checkpoints found.
enum CheckpointsChecked {
    /// A trusted checkpoint is not in the log: nothing was folded.
    TrustedMissing(Broken),
    Folded {
        trusted_matched: u64,
        checkpoints: u64,
        /// `(transaction_id, global_position, event_count)` of the newest passed.
        proven: Option<(i64, i64, i64)>,
        broken: Option<Broken>,
    },
}

impl CheckpointsChecked {
    fn into_report(self, report: &mut VerifyReport) {
        match self {
            Self::TrustedMissing(broken) => report.broken(broken),
            Self::Folded {
                trusted_matched,
                checkpoints,
                proven,
                broken,
            } => {
                report.trusted_checkpoints_matched = trusted_matched;
                if let Some(broken) = broken {
                    report.broken(broken);
                }
                report.checkpoints_checked = checkpoints;
                report.proven(proven);
            }
        }
    }
}

async fn verify_checkpoints(
    pool: &PgPool,
    keys: PublicKeys,
    trusted: &[Checkpoint],
) -> Result<CheckpointsChecked, AppError> {
    let checkpoints = stored_checkpoints(pool, None).await?;
    let trusted_matched = match match_trusted(trusted, &checkpoints, &keys) {
        Ok(matched) => matched,
        Err(broken) => return Ok(CheckpointsChecked::TrustedMissing(broken)),
    };
    let mut fold = RunningFold::new(checkpoints, keys);
    let broken = match fold.last_checkpoint() {
        Some(until) => fold_until(pool, &mut fold, until).await?.err(),
        None => None,
    };
    Ok(CheckpointsChecked::Folded {
        trusted_matched,
        checkpoints: fold.checkpoints_checked,
        proven: fold.proven(),
        broken,
    })
}

/// Folds every event's hash up to `until` in publishing order; the first break.
async fn fold_until(
    pool: &PgPool,
    fold: &mut RunningFold,
    until: LogPosition,
) -> Result<Result<(), Broken>, AppError> {
    let mut after = LogPosition::default();
    loop {
        let page = event_log::hashes_between(pool, after, until, VERIFY_PAGE).await?;
        let read = page.len() as i64;
        for (position, hash) in page {
            after = position;
            if let Err(broken) = fold.fold(after, &hash) {
                return Ok(Err(broken));
            }
        }
        if read < VERIFY_PAGE {
            return Ok(fold.finish());
        }
    }
}
