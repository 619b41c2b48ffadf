//! Reservations of values that must be unique across aggregates (an email
//! across users). A claim is written before the command, deleted if the
//! command fails, and confirmed by a trigger in the transaction that appends
//! the event using it. A pending claim older than `STALE_AFTER` was left by a
//! crashed process and may be taken over.

use sqlx::PgPool;

pub const USER_EMAIL: &str = "user.email";
pub const ROLE_NAME: &str = "role.name";
const STALE_AFTER_SECONDS: f64 = 60.0;

#[derive(Clone)]
pub struct Claims {
    pool: PgPool,
}

impl Claims {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// True when `owner_id` now holds `value` (or already did).
    pub async fn claim(&self, scope: &str, value: &str, owner_id: &str) -> sqlx::Result<bool> {
        let holder: Option<String> = sqlx::query_scalar(
            "INSERT INTO unique_claims (scope, value, owner_id) VALUES ($1, $2, $3) \
             ON CONFLICT (scope, value) DO UPDATE \
               SET owner_id = EXCLUDED.owner_id, claimed_at = now(), \
                   confirmed = unique_claims.confirmed AND unique_claims.owner_id = EXCLUDED.owner_id \
               WHERE unique_claims.owner_id = EXCLUDED.owner_id \
                  OR (NOT unique_claims.confirmed \
                      AND unique_claims.claimed_at < now() - make_interval(secs => $4)) \
             RETURNING owner_id",
        )
        .bind(scope)
        .bind(value)
        .bind(owner_id)
        .bind(STALE_AFTER_SECONDS)
        .fetch_optional(&self.pool)
        .await?;
        Ok(holder.is_some())
    }

    /// Frees a claim the command did not use. A confirmed claim is kept: it
    /// belongs to an event already written.
    pub async fn release(&self, scope: &str, value: &str, owner_id: &str) -> sqlx::Result<()> {
        sqlx::query(
            "DELETE FROM unique_claims \
             WHERE scope = $1 AND value = $2 AND owner_id = $3 AND NOT confirmed",
        )
        .bind(scope)
        .bind(value)
        .bind(owner_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
