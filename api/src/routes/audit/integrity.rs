//! `GET /v1/audit/verify`, `POST /v1/audit/verify` and `GET /v1/audit/keys`:
//! what the standing verification (run off the request path, one process at
//! a time, incrementally) has proven so far, a request for a full pass, and
//! the public keys that check the signed checkpoints (to compare with the
//! ones held out of band).

use actix_web::{web, HttpResponse};
use app::integrity::{listed_keys, request_full_pass, standing_state, Broken, StandingState};
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
    /// True once a pass has reached the newest checkpoint and nothing
    /// verified so far is broken; false while `pending` or when broken.
    ok: bool,
    /// True until the first pass has reached the newest checkpoint.
    pending: bool,
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
    /// When the current pass started from the first event; an event
    /// changed after it was verified is found by the next pass.
    pass_started_at: Option<DateTime<Utc>>,
    /// When the current pass first reached the newest checkpoint.
    pass_completed_at: Option<DateTime<Utc>>,
    /// When the last run ended (runs continue every `AUDIT_VERIFY_INTERVAL_MS`).
    verified_at: Option<DateTime<Utc>>,
    /// A full pass was asked for (`POST /v1/audit/verify`) and has not started.
    full_pass_requested: bool,
}

impl Verification {
    fn of(state: Option<StandingState>, full_pass_requested: bool) -> Self {
        let state = state.unwrap_or_default();
        let report = state.report();
        Self {
            ok: report.ok,
            pending: state.pass_completed_at.is_none() && state.first_broken.is_none(),
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
            pass_started_at: state.pass_started_at,
            pass_completed_at: state.pass_completed_at,
            verified_at: state.verified_at,
            full_pass_requested,
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
        (status = 200, description = "What the standing verification has proven so far (every stream's chain and the signed checkpoints, verified in the background); `ok` false names the first broken link, or the first pass is still `pending`", body = Verification),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs audit:read", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn verify(
    pool: web::Data<PgPool>,
    _: Allowed<AuditRead>,
) -> Result<HttpResponse, ApiError> {
    let (state, requested) = standing_state(pool.get_ref()).await?;
    Ok(HttpResponse::Ok().json(Verification::of(state, requested)))
}

#[utoipa::path(
    post,
    path = "/v1/audit/verify",
    tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "A full pass from the first event starts with the verifier's next run; poll `GET /v1/audit/verify` until `pass_started_at` is later than this request and `pending` is false", body = Verification),
        (status = 401, description = "No valid access token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs audit:read", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn request_verification(
    pool: web::Data<PgPool>,
    _: Allowed<AuditRead>,
) -> Result<HttpResponse, ApiError> {
    request_full_pass(pool.get_ref()).await?;
    let (state, requested) = standing_state(pool.get_ref()).await?;
    Ok(HttpResponse::Accepted().json(Verification::of(state, requested)))
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
