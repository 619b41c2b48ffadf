//! Who a machine client is: an API key presented as a bearer credential or
//! as the client secret of the token grant, or a token granted to one. The
//! key, its account and the account's roles are read in one query from the
//! tables the events' transactions write (`api_keys`, `service_accounts`,
//! `user_role_grants`), so a revocation, an expiry, a disabled account or a
//! removed role is refused by every process as soon as its command answers.
//!
//! A key that is malformed, unknown or whose secret is wrong counts as a
//! failed login for the caller's address; once the address is blocked every
//! key from it is refused `429`, right or wrong, so the block tells a
//! guesser nothing. A real key that was revoked, expired or whose account
//! is disabled is refused the same `401` but not counted: it is no guess,
//! and a forgotten CI job should not block the address it shares.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use domain::{Permission, ServiceAccountStatus};
use sqlx::PgPool;
use uuid::Uuid;

use crate::api_key::{digests_match, ApiKey};
use crate::failed_logins::{address_of, FailedLogins};
use crate::{AppError, RequestContext};

/// A key's last use is written at most this often.
const USAGE_RESOLUTION: TimeDelta = TimeDelta::seconds(60);

/// A service account acting with one of its keys, and what it may do: the
/// permissions its roles grant, narrowed to the key's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub service_account_id: Uuid,
    pub key_id: Uuid,
    pub permissions: BTreeSet<Permission>,
    /// The names of the account's roles, for a token's `roles` claim.
    pub roles: Vec<String>,
}

#[derive(Clone)]
pub struct MachineAuthentication {
    pool: PgPool,
    failed_logins: Arc<FailedLogins>,
}

/// The stored key (when there is one) and the caller's block.
#[derive(sqlx::FromRow)]
struct KeyRow {
    service_account_id: Option<Uuid>,
    secret_hash: Option<String>,
    scope: Option<Vec<String>>,
    expires_at: Option<DateTime<Utc>>,
    revoked: Option<bool>,
    status: Option<String>,
    last_used_at: Option<DateTime<Utc>>,
    permissions: Vec<String>,
    roles: Vec<String>,
    blocked_for_seconds: Option<f64>,
}

/// Why a stored key does not work now.
enum Refusal {
    /// Counted for the address: nothing real was presented.
    Guess,
    /// A real key that no longer works.
    Dead,
}

impl MachineAuthentication {
    pub fn new(pool: PgPool, failed_logins: Arc<FailedLogins>) -> Self {
        Self {
            pool,
            failed_logins,
        }
    }

    /// The machine `presented` (a whole API key) authenticates.
    /// [`AppError::InvalidCredentials`] for any key that does not work now,
    /// [`AppError::TooManyRequests`] while the caller's address is blocked.
    pub async fn with_key(
        &self,
        context: &RequestContext,
        presented: &str,
    ) -> Result<Machine, AppError> {
        let parsed = ApiKey::parse(presented);
        let key_id = parsed.as_ref().map_or(Uuid::nil(), ApiKey::key_id);
        let row = self.load(key_id, address_of(context)).await?;
        if let Some(seconds) = row.blocked_for_seconds {
            return Err(AppError::TooManyRequests {
                retry_after_seconds: seconds.ceil().max(1.0) as u64,
            });
        }
        let checked = match &parsed {
            Ok(key) => check(&row, Some(key), Utc::now()),
            Err(_) => Err(Refusal::Guess),
        };
        match checked {
            Ok(()) => Ok(self.machine(row, key_id, context)),
            Err(Refusal::Guess) => {
                self.failed_logins.record(context, None, Utc::now()).await?;
                Err(AppError::InvalidCredentials)
            }
            Err(Refusal::Dead) => Err(AppError::InvalidCredentials),
        }
    }

    /// The machine a token granted to `key_id` acts as, if the key still
    /// works and still belongs to `service_account_id`.
    pub async fn with_token(
        &self,
        context: &RequestContext,
        service_account_id: Uuid,
        key_id: Uuid,
    ) -> Result<Option<Machine>, AppError> {
        let row = self.load(key_id, None).await?;
        if row.service_account_id != Some(service_account_id)
            || check(&row, None, Utc::now()).is_err()
        {
            return Ok(None);
        }
        Ok(Some(self.machine(row, key_id, context)))
    }

    async fn load(&self, key_id: Uuid, address: Option<String>) -> sqlx::Result<KeyRow> {
        sqlx::query_as(
            "SELECT k.service_account_id, k.secret_hash, k.scope, k.expires_at, \
                    k.revoked_at IS NOT NULL AS revoked, a.status, u.last_used_at, \
                    ARRAY(SELECT DISTINCT permission \
                          FROM user_role_grants ur JOIN role_grants r USING (role_id) \
                          CROSS JOIN LATERAL unnest(r.permissions) AS permission \
                          WHERE ur.user_id = k.service_account_id) AS permissions, \
                    ARRAY(SELECT r.name FROM user_role_grants ur JOIN role_grants r USING (role_id) \
                          WHERE ur.user_id = k.service_account_id ORDER BY r.name) AS roles, \
                    (SELECT EXTRACT(EPOCH FROM blocked_until - now())::float8 \
                     FROM login_ip_blocks WHERE ip = $2 AND blocked_until > now()) \
                        AS blocked_for_seconds \
             FROM (SELECT $1::uuid AS key_id) asked \
             LEFT JOIN api_keys k USING (key_id) \
             LEFT JOIN service_accounts a USING (service_account_id) \
             LEFT JOIN api_key_usage u USING (key_id)",
        )
        .bind(key_id)
        .bind(address)
        .fetch_one(&self.pool)
        .await
    }

    fn machine(&self, row: KeyRow, key_id: Uuid, context: &RequestContext) -> Machine {
        let now = Utc::now();
        if row
            .last_used_at
            .is_none_or(|at| now - at >= USAGE_RESOLUTION)
        {
            self.record_use(key_id, context.request_ip.clone(), now);
        }
        let scope: BTreeSet<Permission> = parse_permissions(row.scope.unwrap_or_default());
        let permissions = parse_permissions(row.permissions)
            .intersection(&scope)
            .copied()
            .collect();
        Machine {
            service_account_id: row.service_account_id.unwrap_or_default(),
            key_id,
            permissions,
            roles: row.roles,
        }
    }

    /// Writes the key's last use after the answer; a lost write only makes
    /// the time shown older.
    fn record_use(&self, key_id: Uuid, from: Option<String>, at: DateTime<Utc>) {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let written = sqlx::query(
                "INSERT INTO api_key_usage (key_id, last_used_at, last_used_from) \
                 VALUES ($1, $2, $3) \
                 ON CONFLICT (key_id) DO UPDATE \
                 SET last_used_at = excluded.last_used_at, last_used_from = excluded.last_used_from \
                 WHERE api_key_usage.last_used_at < excluded.last_used_at",
            )
            .bind(key_id)
            .bind(at)
            .bind(from)
            .execute(&pool)
            .await;
            if let Err(error) = written {
                tracing::warn!(%key_id, %error, "an API key's last use was not recorded");
            }
        });
    }
}

/// Whether the stored key works at `now` and, when `presented`, is the one
/// presented.
fn check(row: &KeyRow, presented: Option<&ApiKey>, now: DateTime<Utc>) -> Result<(), Refusal> {
    let Some(stored) = &row.secret_hash else {
        return Err(Refusal::Guess);
    };
    if presented.is_some_and(|key| !digests_match(stored, &key.digest())) {
        return Err(Refusal::Guess);
    }
    let active = row.status.as_deref() == Some(ServiceAccountStatus::Active.as_str());
    let live = row.revoked == Some(false) && row.expires_at.is_some_and(|at| now < at);
    match active && live {
        true => Ok(()),
        false => Err(Refusal::Dead),
    }
}

fn parse_permissions(names: Vec<String>) -> BTreeSet<Permission> {
    names
        .iter()
        .filter_map(|name| Permission::parse(name).ok())
        .collect()
}
