//! Reads of the `users_view` read model. Never folds events.

use chrono::{DateTime, Utc};
use infra::event_log::LogPosition;
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::freshness::Freshness;
use crate::problem::ApiError;

#[derive(Debug, Serialize, FromRow, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    /// `active`, `deactivated` or `erased`.
    pub status: String,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set while the user is locked (by the lockout policy); the lock ends
    /// by itself at this time.
    pub locked_until: Option<DateTime<Utc>>,
    /// Sequence of the user's last applied event (its version).
    pub version: i64,
}

#[derive(Debug, Default)]
pub struct UserFilter {
    pub status: Option<String>,
    pub email_key: Option<String>,
}

const COLUMNS: &str = "id, email, display_name, status, registered_at, updated_at, \
     CASE WHEN locked_until > now() THEN locked_until END AS locked_until, sequence AS version";

pub async fn find(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<UserView>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users_view WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// The caller's own user. A caller who has just registered and signed in
/// can be ahead of the read model, so a missing row waits (bounded) for the
/// projection to reach the user's stream before it counts as missing. The
/// position is where the read was made, when it had to wait.
pub async fn find_own(
    pool: &PgPool,
    freshness: &Freshness,
    id: Uuid,
) -> Result<(Option<UserView>, Option<LogPosition>), ApiError> {
    if let Some(user) = find(pool, id).await.map_err(ApiError::internal)? {
        return Ok((Some(user), None));
    }
    let applied = freshness
        .wait_for_stream(<domain::User as cqrs_es::Aggregate>::TYPE, &id.to_string())
        .await?;
    let user = find(pool, id).await.map_err(ApiError::internal)?;
    Ok((user, Some(applied)))
}

/// Up to `limit` users after `cursor`, in id order (ids are UUIDv7, so this
/// is registration order). Returns one extra row to tell if more follow.
pub async fn list(
    pool: &PgPool,
    filter: &UserFilter,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<UserView>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users_view \
         WHERE ($1::text IS NULL OR status = $1) \
           AND ($2::text IS NULL OR email_key = $2) \
           AND ($3::uuid IS NULL OR id > $3) \
         ORDER BY id LIMIT $4"
    ))
    .bind(&filter.status)
    .bind(&filter.email_key)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(pool)
    .await
}

/// What the user's live roles grant, read in one statement (one snapshot)
/// from the grants authorization decides by, so the roles and the
/// permissions shown are of the same moment and are what the caller holds.
#[derive(Debug, Default, FromRow)]
pub struct Grants {
    /// Names of the roles the user holds (deleted roles excluded), sorted.
    pub roles: Vec<String>,
    /// The permissions those roles grant, each once.
    pub permissions: Vec<String>,
}

pub async fn grants(pool: &PgPool, user_id: Uuid) -> sqlx::Result<Grants> {
    sqlx::query_as(
        "WITH held AS ( \
             SELECT r.name, r.permissions FROM user_role_grants ur \
             JOIN role_grants r USING (role_id) \
             WHERE ur.user_id = $1) \
         SELECT ARRAY(SELECT name FROM held ORDER BY name) AS roles, \
                ARRAY(SELECT DISTINCT permission FROM held \
                      CROSS JOIN LATERAL unnest(held.permissions) AS permission) AS permissions",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await
}
