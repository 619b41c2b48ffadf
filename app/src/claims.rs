//! Reservations of values that must be unique across aggregates (an email
//! across users, a role name across roles). A claim is written before the
//! command, deleted if the command fails, and confirmed by a trigger in the
//! transaction that appends the event using it. A pending claim older than
//! `STALE_AFTER_SECONDS` was left by a crashed process and may be taken over.

use std::future::Future;

use domain::ClaimScope;
use sqlx::PgPool;
use uuid::Uuid;

use crate::AppError;

const STALE_AFTER_SECONDS: f64 = 60.0;

#[derive(Clone)]
pub struct Claims {
    pool: PgPool,
}

/// A value one aggregate wants to hold alone.
pub struct Claim {
    pub scope: ClaimScope,
    /// The value's uniqueness key (e.g. the lowercased email).
    pub value: String,
    pub owner: Uuid,
}

impl Claims {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Claims `claim` (when given), runs `command`, and frees the claim
    /// again unless the command wrote the event that confirmed it. A value
    /// another owner holds is refused before the command runs.
    pub async fn while_claimed<T, Fut>(
        &self,
        claim: Option<&Claim>,
        command: impl FnOnce() -> Fut,
    ) -> Result<T, AppError>
    where
        Fut: Future<Output = Result<T, AppError>>,
    {
        let Some(claim) = claim else {
            return command().await;
        };
        if !self.claim(claim).await? {
            return Err(taken(claim.scope));
        }
        let result = command().await;
        // Frees nothing when the event was written: the trigger confirmed the claim.
        self.release(claim).await?;
        result
    }

    /// The aggregate that holds `value` for good (its event was written).
    pub async fn owner(&self, scope: ClaimScope, value: &str) -> sqlx::Result<Option<Uuid>> {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT owner_id FROM unique_claims WHERE scope = $1 AND value = $2 AND confirmed",
        )
        .bind(scope.as_str())
        .bind(value)
        .fetch_optional(&self.pool)
        .await?;
        Ok(owner.and_then(|id| Uuid::parse_str(&id).ok()))
    }

    /// True when the owner now holds the value (or already did).
    async fn claim(&self, claim: &Claim) -> sqlx::Result<bool> {
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
        .bind(claim.scope.as_str())
        .bind(&claim.value)
        .bind(claim.owner.to_string())
        .bind(STALE_AFTER_SECONDS)
        .fetch_optional(&self.pool)
        .await?;
        Ok(holder.is_some())
    }

    /// Frees a claim the command did not use. A confirmed claim is kept: it
    /// belongs to an event already written.
    async fn release(&self, claim: &Claim) -> sqlx::Result<()> {
        sqlx::query(
            "DELETE FROM unique_claims \
             WHERE scope = $1 AND value = $2 AND owner_id = $3 AND NOT confirmed",
        )
        .bind(claim.scope.as_str())
        .bind(&claim.value)
        .bind(claim.owner.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn taken(scope: ClaimScope) -> AppError {
    if scope == ClaimScope::ROLE_NAME {
        AppError::RoleNameTaken
    } else {
        AppError::EmailTaken
    }
}
