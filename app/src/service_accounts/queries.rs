//! Service accounts and their keys as the tables the events' transactions
//! write have them (`service_accounts`, `api_keys`, `api_key_usage`): what
//! an administrator reads is as fresh as what decides access.

use chrono::{DateTime, Utc};
use domain::ServiceAccountStatus;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::AppError;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ServiceAccountRow {
    pub service_account_id: Uuid,
    pub name: String,
    pub description: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Names of the roles it holds.
    pub roles: Vec<String>,
    pub role_ids: Vec<Uuid>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub key_id: Uuid,
    pub description: String,
    pub scope: Vec<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub replaced_by: Option<Uuid>,
    /// Written at most once a minute per key.
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_from: Option<String>,
}

const ACCOUNT_COLUMNS: &str = "a.service_account_id, a.name, a.description, a.status, \
     a.created_at, a.updated_at, \
     ARRAY(SELECT r.name FROM user_role_grants ur JOIN role_grants r USING (role_id) \
           WHERE ur.user_id = a.service_account_id ORDER BY r.name) AS roles, \
     ARRAY(SELECT ur.role_id FROM user_role_grants ur \
           WHERE ur.user_id = a.service_account_id ORDER BY ur.role_id) AS role_ids";

pub struct ServiceAccountQueries {
    pool: PgPool,
}

impl ServiceAccountQueries {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Every account not erased, oldest first.
    pub async fn list(&self) -> Result<Vec<ServiceAccountRow>, AppError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM service_accounts a \
             WHERE a.status <> $1 ORDER BY a.created_at, a.service_account_id"
        ))
        .bind(ServiceAccountStatus::Erased.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The account unless erased, with its keys, newest first.
    pub async fn get(
        &self,
        service_account_id: Uuid,
    ) -> Result<(ServiceAccountRow, Vec<ApiKeyRow>), AppError> {
        let account: ServiceAccountRow = sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM service_accounts a \
             WHERE a.service_account_id = $1 AND a.status <> $2"
        ))
        .bind(service_account_id)
        .bind(ServiceAccountStatus::Erased.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(AppError::NotFound("service account"))?;
        let keys = sqlx::query_as(
            "SELECT k.key_id, k.description, k.scope, k.issued_at, k.expires_at, k.revoked_at, \
                    k.replaced_by, u.last_used_at, u.last_used_from \
             FROM api_keys k LEFT JOIN api_key_usage u USING (key_id) \
             WHERE k.service_account_id = $1 ORDER BY k.issued_at DESC, k.key_id",
        )
        .bind(service_account_id)
        .fetch_all(&self.pool)
        .await?;
        Ok((account, keys))
    }
}
