//! Verifying the event store itself: every stream in sequence order (each
//! event's seal and its link to the one before), then every event's hash in
//! publishing order against the signed checkpoints. Each page is its own
//! short query: nothing is locked and memory holds one page.

use chrono::{DateTime, Utc};
use infra::event_log::{self, LogPosition};
use infra::integrity::{stored_checkpoints, Checkpoint, HashedEvent, PublicKeys};
use serde_json::{json, Value};
use sqlx::PgPool;

use cqrs_es::Aggregate;
use domain::{Session, SessionEvent, User, UserEvent};

use super::check::{match_trusted, RunningFold, SealedRecord};
use super::markers::{erased_values, Erasures};
use super::report::{Broken, VerifyReport};
use crate::AppError;

/// Events read per query.
pub(super) const VERIFY_PAGE: i64 = 1000;

/// The columns of a [`Row`], from `events` aliased `e`.
pub(super) const ROW_COLUMNS: &str =
    "e.event_id::text AS event_id, e.hash_version, e.aggregate_type, e.aggregate_id, e.sequence, \
     e.transaction_id::text::bigint AS transaction_id, e.global_position, e.event_type, \
     e.event_version, e.recorded_at, e.payload, e.metadata, e.sealed::text AS sealed, e.salts, \
     e.prev_hash, e.hash";

#[derive(sqlx::FromRow)]
pub(super) struct Row {
    #[sqlx(flatten)]
    event: HashedEvent,
    pub(super) transaction_id: i64,
    pub(super) global_position: i64,
    payload: Value,
    metadata: Value,
    salts: Value,
}

impl From<Row> for SealedRecord {
    fn from(row: Row) -> Self {
        Self {
            event: row.event,
            position: LogPosition {
                transaction_id: row.transaction_id,
                global_position: row.global_position,
            },
            visible: json!({"payload": row.payload, "metadata": row.metadata}),
            salts: row.salts,
        }
    }
}

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
    let mut report = VerifyReport::default();
    let erasures = erasures_on_record(pool).await?;
    verify_streams(pool, &erasures, &mut report).await?;
    verify_checkpoints(pool, keys, trusted, &mut report).await?;
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
    record: &SealedRecord,
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

async fn verify_streams(
    pool: &PgPool,
    erasures: &Erasures,
    report: &mut VerifyReport,
) -> Result<(), AppError> {
    let mut previous: Option<(String, String, i64, String)> = None;
    loop {
        let (after_type, after_id, after_sequence) = previous
            .as_ref()
            .map_or((String::new(), String::new(), 0), |(t, i, s, _)| {
                (t.clone(), i.clone(), *s)
            });
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM events e \
             WHERE (e.aggregate_type, e.aggregate_id, e.sequence) > ($1, $2, $3) \
             ORDER BY e.aggregate_type, e.aggregate_id, e.sequence LIMIT $4"
        );
        let rows: Vec<Row> = sqlx::query_as(&sql)
            .bind(&after_type)
            .bind(&after_id)
            .bind(after_sequence)
            .bind(VERIFY_PAGE)
            .fetch_all(pool)
            .await?;
        let read = rows.len() as i64;
        for row in rows {
            let record = SealedRecord::from(row);
            let before = previous
                .as_ref()
                .filter(|(t, i, _, _)| {
                    *t == record.event.aggregate_type && *i == record.event.aggregate_id
                })
                .map(|(_, _, sequence, hash)| (*sequence, hash.as_str()));
            report.events_checked += 1;
            if let Err(broken) = check_stored(&record, before, erasures) {
                report.broken(broken);
            }
            previous = Some((
                record.event.aggregate_type,
                record.event.aggregate_id,
                record.event.sequence,
                record.event.hash,
            ));
            if report.first_broken.is_some() {
                return Ok(());
            }
        }
        if read < VERIFY_PAGE {
            return Ok(());
        }
    }
}

async fn verify_checkpoints(
    pool: &PgPool,
    keys: PublicKeys,
    trusted: &[Checkpoint],
    report: &mut VerifyReport,
) -> Result<(), AppError> {
    if report.first_broken.is_some() {
        return Ok(());
    }
    let checkpoints = stored_checkpoints(pool, None).await?;
    match match_trusted(trusted, &checkpoints, &keys) {
        Ok(matched) => report.trusted_checkpoints_matched = matched,
        Err(broken) => {
            report.broken(broken);
            return Ok(());
        }
    }
    let mut fold = RunningFold::new(checkpoints, keys);
    let Some(until) = fold.last_checkpoint() else {
        report.proven(None);
        return Ok(());
    };
    let mut after = LogPosition::default();
    loop {
        let page = event_log::hashes_between(pool, after, until, VERIFY_PAGE).await?;
        let read = page.len() as i64;
        for (position, hash) in page {
            after = position;
            if let Err(broken) = fold.fold(after, &hash) {
                report.broken(broken);
                report.checkpoints_checked = fold.checkpoints_checked;
                report.proven(fold.proven());
                return Ok(());
            }
        }
        if read < VERIFY_PAGE {
            break;
        }
    }
    if let Err(broken) = fold.finish() {
        report.broken(broken);
    }
    report.checkpoints_checked = fold.checkpoints_checked;
    report.proven(fold.proven());
    Ok(())
}
