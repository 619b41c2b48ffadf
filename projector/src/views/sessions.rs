//! `sessions_view`: one row per session with its status, deadlines and how
//! it ended. Refresh token hashes are never stored.

use bus::Envelope;
use chrono::{DateTime, Utc};
use domain::SessionEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::apply::{decode, guarded_update, guarded_update_sql, ApplyError};
use crate::views::{Target, View};

/// Applies the event that directly follows the session's row; false if the
/// row was not at the previous sequence.
pub(crate) async fn apply_next(
    db: &mut PgConnection,
    target: Target,
    session_id: Uuid,
    envelope: &Envelope,
) -> Result<bool, ApplyError> {
    let event: SessionEvent = decode(envelope)?;
    let table = target.table(View::Sessions.name());
    let result = match &event {
        SessionEvent::Started {
            user_id,
            started_at,
            expires_at,
            idle_timeout_seconds,
            ip,
            user_agent,
            ..
        } => {
            sqlx::query(&format!(
                "INSERT INTO {table} (session_id, user_id, status, ip, user_agent, started_at, \
                   expires_at, idle_timeout_seconds, last_activity_at, idle_expires_at, \
                   sequence, global_position) \
                 VALUES ($1, $2, 'active', $3, $4, $5, $6, $7, $5, \
                   $5 + make_interval(secs => $7), $8, $9) \
                 ON CONFLICT (session_id) DO NOTHING"
            ))
            .bind(session_id)
            .bind(user_id)
            .bind(ip)
            .bind(user_agent)
            .bind(started_at)
            .bind(expires_at)
            .bind(idle_timeout_seconds)
            .bind(envelope.sequence)
            .bind(envelope.global_position)
            .execute(db)
            .await?
        }
        SessionEvent::Refreshed { refreshed_at, .. } => {
            let set = "last_activity_at = $4, \
                       idle_expires_at = $4 + make_interval(secs => idle_timeout_seconds)";
            let sql = update_sql(&table, set);
            guarded_update(&sql, session_id, envelope)
                .bind(refreshed_at)
                .execute(db)
                .await?
        }
        SessionEvent::Revoked { reason, revoked_at } => {
            end(
                db,
                &table,
                session_id,
                envelope,
                "revoked",
                reason.as_str(),
                revoked_at,
            )
            .await?
        }
        SessionEvent::Expired { reason, expired_at } => {
            end(
                db,
                &table,
                session_id,
                envelope,
                "expired",
                reason.as_str(),
                expired_at,
            )
            .await?
        }
    };
    Ok(result.rows_affected() == 1)
}

async fn end(
    db: &mut PgConnection,
    table: &str,
    session_id: Uuid,
    envelope: &Envelope,
    status: &str,
    reason: &str,
    at: &DateTime<Utc>,
) -> Result<sqlx::postgres::PgQueryResult, sqlx::Error> {
    let sql = update_sql(table, "status = $4, end_reason = $5, ended_at = $6");
    guarded_update(&sql, session_id, envelope)
        .bind(status)
        .bind(reason)
        .bind(at)
        .execute(db)
        .await
}

fn update_sql(table: &str, set: &str) -> String {
    guarded_update_sql(table, View::Sessions.key_column(), set)
}
