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
use super::report::VerifyReport;
use crate::AppError;

/// Events read per query.
const VERIFY_PAGE: i64 = 1000;

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    event: HashedEvent,
    transaction_id: i64,
    global_position: i64,
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
async fn erasures_on_record(pool: &PgPool) -> Result<Erasures, AppError> {
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
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT event_id::text AS event_id, hash_version, aggregate_type, aggregate_id, sequence, transaction_id::text::bigint AS transaction_id, \
                    global_position, event_type, event_version, recorded_at, payload, metadata, \
                    sealed::text AS sealed, salts, prev_hash, hash \
             FROM events WHERE (aggregate_type, aggregate_id, sequence) > ($1, $2, $3) \
             ORDER BY aggregate_type, aggregate_id, sequence LIMIT $4",
        )
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
            let checked = record
                .check()
                .and_then(|withheld| erased_values(&record, withheld, false))
                .and_then(|erased| {
                    match erased.into_iter().find(|value| !erasures.covers(value)) {
                        Some(unexpected) => Err(unexpected.broken),
                        None => record.check_link(before),
                    }
                });
            if let Err(broken) = checked {
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
