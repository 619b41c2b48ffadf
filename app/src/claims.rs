//! Reservations of values that must be unique across aggregates (an email
//! across users, a role name across roles). A claim is written before the
//! command, deleted if the command fails, and confirmed by a trigger in the
//! transaction that appends the event using it. A pending claim older than
//! `STALE_AFTER_SECONDS` was left by a crashed process and may be taken over.
//! An owner starts a claim only while it holds no other fresh pending one
//! in the scope: the trigger confirms the owner's pending claim, as it
//! cannot compute an email's canonical form from the event.

use std::future::Future;

use domain::{ClaimScope, Email};
use sqlx::{PgConnection, PgPool};
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
    /// The value's uniqueness key (`Email::uniqueness_key`, `RoleName::uniqueness_key`).
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

    /// The account `email` reaches: the one holding its canonical form, or
    /// one that holds its old form because another account held the
    /// canonical form when it came in (both existed before; see
    /// `infra::email_keys`).
    pub async fn email_owner(&self, email: &Email) -> sqlx::Result<Option<Uuid>> {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT owner_id FROM unique_claims \
             WHERE scope = $1 AND confirmed \
               AND (value = $2 OR (value = $3 AND canonical_value = $2)) \
             ORDER BY canonical_value IS NULL LIMIT 1",
        )
        .bind(ClaimScope::USER_EMAIL.as_str())
        .bind(email.uniqueness_key())
        .bind(email.legacy_key())
        .fetch_optional(&self.pool)
        .await?;
        Ok(owner.and_then(|id| Uuid::parse_str(&id).ok()))
    }

    /// True when the owner now holds the value (or already did). Another
    /// fresh pending claim of the owner is a concurrent change of the same
    /// aggregate: a conflict, as two commands appending to it would be.
    async fn claim(&self, claim: &Claim) -> Result<bool, AppError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext('unique_claims'), hashtext($1 || ' ' || $2))",
        )
        .bind(claim.scope.as_str())
        .bind(claim.owner.to_string())
        .execute(&mut *tx)
        .await?;
        if Self::pending_elsewhere(&mut tx, claim).await? {
            return Err(AppError::ConcurrencyConflict);
        }
        let held = Self::insert(&mut tx, claim).await?;
        tx.commit().await?;
        Ok(held)
    }

    /// Whether the owner has a fresh pending claim of another value; stale
    /// ones, left by a crashed process, are dropped.
    async fn pending_elsewhere(conn: &mut PgConnection, claim: &Claim) -> sqlx::Result<bool> {
        sqlx::query(
            "DELETE FROM unique_claims \
             WHERE scope = $1 AND owner_id = $2 AND value <> $3 AND NOT confirmed \
               AND claimed_at < now() - make_interval(secs => $4)",
        )
        .bind(claim.scope.as_str())
        .bind(claim.owner.to_string())
        .bind(&claim.value)
        .bind(STALE_AFTER_SECONDS)
        .execute(&mut *conn)
        .await?;
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM unique_claims \
             WHERE scope = $1 AND owner_id = $2 AND value <> $3 AND NOT confirmed)",
        )
        .bind(claim.scope.as_str())
        .bind(claim.owner.to_string())
        .bind(&claim.value)
        .fetch_one(&mut *conn)
        .await
    }

    /// A value is refused while an account keeps it in its old form (see
    /// `canonical_value`), so that form reaches no second account.
    async fn insert(conn: &mut PgConnection, claim: &Claim) -> sqlx::Result<bool> {
        let holder: Option<String> = sqlx::query_scalar(
            "INSERT INTO unique_claims (scope, value, owner_id) \
             SELECT $1, $2, $3 WHERE NOT EXISTS ( \
               SELECT 1 FROM unique_claims \
               WHERE scope = $1 AND canonical_value = $2 AND owner_id <> $3) \
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
        .fetch_optional(&mut *conn)
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
