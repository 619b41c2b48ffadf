//! A session's earlier refresh tokens, looked up in its stream: the outside
//! check behind [`domain::SessionServices`]. Only a refresh presenting a
//! token older than the previous one asks, so this reads a long stream
//! only on the path of a replayed (or forged) token.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::{
    HistoryUnavailable, RefreshTokenHash, RefreshTokenHistory, Session, SessionEvent,
    SessionServices,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::commands::StoreServices;

pub struct EventStoreHistory {
    pool: PgPool,
    /// When the token issued by the event at the second parameter's
    /// position was rotated away: the `refreshed_at` of the next rotation.
    sql: String,
}

impl EventStoreHistory {
    pub fn new(pool: PgPool) -> Self {
        let sql = format!(
            "SELECT e.{refreshed_at} FROM events e \
             WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 AND e.event_type = '{refreshed}' \
               AND e.sequence > (SELECT i.sequence FROM events i \
                   WHERE i.aggregate_type = $1 AND i.aggregate_id = $2 \
                     AND ((i.event_type = '{started}' AND i.{started_hash} = $3) \
                       OR (i.event_type = '{refreshed}' AND i.{refreshed_hash} = $3)) \
                   ORDER BY i.sequence LIMIT 1) \
             ORDER BY e.sequence LIMIT 1",
            refreshed_at = SessionEvent::REFRESHED_REFRESHED_AT.json_text(),
            refreshed = SessionEvent::REFRESHED,
            started = SessionEvent::STARTED,
            started_hash = SessionEvent::STARTED_REFRESH_TOKEN_HASH.json_text(),
            refreshed_hash = SessionEvent::REFRESHED_REFRESH_TOKEN_HASH.json_text(),
        );
        Self { pool, sql }
    }
}

#[async_trait]
impl RefreshTokenHistory for EventStoreHistory {
    async fn superseded_at(
        &self,
        session_id: Uuid,
        token: &RefreshTokenHash,
    ) -> Result<Option<DateTime<Utc>>, HistoryUnavailable> {
        let at: Option<String> = sqlx::query_scalar(&self.sql)
            .bind(Session::TYPE)
            .bind(session_id.to_string())
            .bind(token.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| HistoryUnavailable(Arc::new(error)))?;
        at.map(|at| at.parse::<DateTime<Utc>>())
            .transpose()
            .map_err(|error| HistoryUnavailable(Arc::new(error)))
    }
}

impl StoreServices for SessionServices {
    fn for_store(pool: &PgPool) -> Self {
        SessionServices::new(Arc::new(EventStoreHistory::new(pool.clone())))
    }
}
