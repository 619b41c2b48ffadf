//! `GET /v1/audit/verify` and `GET /v1/audit/keys`: the proof that the log
//! is unaltered, recomputed on request, and the public keys that check the
//! signed checkpoints (to compare with the ones held out of band).

use actix_web::{web, HttpResponse};
use app::integrity::{listed_keys, verify_store, Broken, VerifyReport};
use chrono::{DateTime, Utc};
use infra::integrity::{public_key_pem, PublicKeys};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::auth::principal::AuditRead;
use crate::auth::Allowed;
use crate::problem::{ApiError, Problem, PROBLEM};

/// Where the proof first fails.
#[derive(Serialize, ToSchema)]
pub struct BrokenLink {
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    sequence: Option<i64>,
    global_position: Option<i64>,
    expected: Option<String>,
    found: Option<String>,
    /// `hash_mismatch`, `seal_mismatch`, `broken_link`, `checkpoint_mismatch`,
    /// `checkpoint_event_missing`, `bad_signature`, `malformed_line`,
    /// `unexpected_erasure` or `trusted_checkpoint_missing`.
    reason: String,
    detail: Option<String>,
}

/// The events after the newest checkpoint that verified: each checked and
/// linked in its stream, but no signature covers their number or order.
#[derive(Serialize, ToSchema)]
pub struct UnprovenTailView {
    /// Where the newest checkpoint that verified stands; null without one.
    after_transaction_id: Option<i64>,
    after_global_position: Option<i64>,
    events: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Verification {
    ok: bool,
    events_checked: u64,
    checkpoints_checked: u64,
    /// Events up to and including the newest checkpoint that verified.
    events_proven: u64,
    /// Never null here (the database is never filtered).
    unproven_tail: Option<UnprovenTailView>,
    /// Always 0 here: trusted checkpoints are given to `api audit verify`.
    trusted_checkpoints_matched: u64,
    /// Always false here (the database is never filtered).
    filtered: bool,
    erasure_markers_unconfirmed: u64,
    first_broken: Option<BrokenLink>,
}

impl From<VerifyReport> for Verification {
    fn from(report: VerifyReport) -> Self {
        Self {
            ok: report.ok,
            events_checked: report.events_checked,
            checkpoints_checked: report.checkpoints_checked,
            events_proven: report.events_proven,
            unproven_tail: report.unproven_tail.map(|tail| UnprovenTailView {
                after_transaction_id: tail.after_transaction_id,
                after_global_position: tail.after_global_position,
                events: tail.events,
            }),
            trusted_checkpoints_matched: report.trusted_checkpoints_matched,
            filtered: report.filtered,
            erasure_markers_unconfirmed: report.erasure_markers_unconfirmed,
            first_broken: report.first_broken.map(BrokenLink::from),
        }
    }
}

impl From<Broken> for BrokenLink {
    fn from(broken: Broken) -> Self {
        let reason = serde_json::to_value(broken.reason)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        Self {
            aggregate_type: broken.aggregate_type,
            aggregate_id: broken.aggregate_id,
            sequence: broken.sequence,
            global_position: broken.global_position,
            expected: broken.expected,
            found: broken.found,
            reason,
            detail: broken.detail,
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every stream's chain and every signed checkpoint recomputed; `ok` false names the first broken link", body = Verification),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs audit:read", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn verify(
    pool: web::Data<PgPool>,
    _: Allowed<AuditRead>,
) -> Result<HttpResponse, ApiError> {
    let report = verify_store(pool.get_ref(), None, &[]).await?;
    Ok(HttpResponse::Ok().json(Verification::from(report)))
}

#[derive(Serialize, ToSchema)]
pub struct SigningKeyView {
    key_id: String,
    /// Base64 of the Ed25519 key's 32 bytes.
    public_key: String,
    /// SPKI PEM, the format `api audit verify --public-key` reads.
    public_key_pem: String,
    created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct SigningKeys {
    /// Every key that ever signed a checkpoint, oldest first.
    keys: Vec<SigningKeyView>,
}

#[utoipa::path(
    get,
    path = "/v1/audit/keys",
    tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The public halves of the checkpoint signing keys", body = SigningKeys),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs audit:read", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn keys(
    pool: web::Data<PgPool>,
    _: Allowed<AuditRead>,
) -> Result<HttpResponse, ApiError> {
    let mut keys = Vec::new();
    for listed in listed_keys(pool.get_ref()).await? {
        let mut parsed = PublicKeys::default();
        if parsed.insert_base64(&listed.public_key).is_err() {
            continue;
        }
        let pem = parsed.iter().map(|(_, key)| public_key_pem(key)).collect();
        keys.push(SigningKeyView {
            key_id: listed.key_id,
            public_key: listed.public_key,
            public_key_pem: pem,
            created_at: listed.created_at,
        });
    }
    Ok(HttpResponse::Ok().json(SigningKeys { keys }))
}
