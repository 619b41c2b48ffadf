//! Failed credential checks (a login, or a password change with a wrong
//! current password), counted per client address by the api whatever the
//! email was, and per account as `user.login_failed` for the worker's
//! lockout. A sign-up with an email in use counts for the address too: its
//! `409` tells that the email has an account. An address with too many
//! failures in the window is blocked: every login and sign-up from it is
//! then answered the same `429`, so the block says nothing about which
//! emails exist.

use std::net::IpAddr;
use std::sync::Arc;

use bus::metadata_keys;
use bus::EventMetadata;
use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::{Aggregate, AggregateError};
use domain::{User, UserCommand, UserError, UserEvent};
use infra::commands::CommandBus;
use infra::shutdown::Shutdown;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{AppError, RequestContext};

/// Advisory lock namespace (first key of `pg_advisory_xact_lock(int, int)`)
/// in which failures of one address take turns, so none is missed.
const ADDRESS_LOCK_SPACE: i32 = 0x6170_6901; // "api\x01"

/// When an address is blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Failures from one address within `window` that block it.
    pub threshold: u32,
    pub window: TimeDelta,
    /// How long a block lasts, from the failure that triggered it.
    pub block: TimeDelta,
}

impl AddressPolicy {
    /// The defaults of `LOCKOUT_IP_THRESHOLD`, `LOCKOUT_WINDOW_SECONDS` and
    /// `LOCKOUT_IP_BLOCK_SECONDS`; for callers without settings (the
    /// operator's bootstrap, which never checks a password).
    pub const DEFAULT: Self = Self {
        threshold: 20,
        window: TimeDelta::seconds(900),
        block: TimeDelta::seconds(900),
    };
}

/// How long the process that stored a failure has to settle it; after
/// that, any api settles it again (see [`FailedLogins::recover`]).
const LEASE: TimeDelta = TimeDelta::seconds(300);
/// A process that could not append a failure's event within this long
/// (well inside [`LEASE`]) leaves it to recovery, so that the two never
/// append the same failure side by side.
const SETTLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);
/// Failures settled per round of recovery.
const RECOVERY_BATCH: i64 = 100;

#[derive(Clone)]
pub struct FailedLogins {
    pool: PgPool,
    users: Arc<CommandBus<User>>,
    policy: AddressPolicy,
}

/// A failed check as stored before it is answered (`pending_login_failures`).
#[derive(Debug, sqlx::FromRow)]
struct PendingFailure {
    id: Uuid,
    user_id: Option<Uuid>,
    address: Option<String>,
    ip: Option<String>,
    failed_at: DateTime<Utc>,
    /// Its `causation_id` is `id`: how a settled failure is recognised.
    metadata: Json<EventMetadata>,
}

/// Why a failure is still pending; it is settled again later.
#[derive(Debug, thiserror::Error)]
enum SettleError {
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
    #[error("could not append user.login_failed")]
    Append(#[source] AggregateError<UserError>),
    #[error("not appended within {SETTLE_WITHIN:?}; left to recovery")]
    TooLate,
}

impl FailedLogins {
    pub fn new(pool: PgPool, policy: AddressPolicy) -> Self {
        Self {
            users: Arc::new(CommandBus::new(pool.clone())),
            pool,
            policy,
        }
    }

    /// `429` with the seconds left while the caller's address is blocked.
    pub async fn refuse_if_blocked(&self, context: &RequestContext) -> Result<(), AppError> {
        let Some(address) = address_of(context) else {
            return Ok(());
        };
        let remaining: Option<f64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM blocked_until - now())::float8 FROM login_ip_blocks \
             WHERE ip = $1 AND blocked_until > now()",
        )
        .bind(address)
        .fetch_optional(&self.pool)
        .await?;
        match remaining {
            Some(seconds) => Err(AppError::TooManyRequests {
                retry_after_seconds: seconds.ceil().max(1.0) as u64,
            }),
            None => Ok(()),
        }
    }

    /// Records a failed check: per address always, per account
    /// (`user.login_failed`) when `user_id` names one. Before the caller
    /// answers, the failure is stored and counted for its address in one
    /// transaction whatever the account, so that every kind of failure
    /// answers in the same time, none that was answered is lost, and a
    /// burst cannot outrun the block: the failures beyond the address's
    /// threshold are refused `429`, even those that passed
    /// [`FailedLogins::refuse_if_blocked`] together. The event is appended
    /// after the answer.
    pub async fn record(
        &self,
        context: &RequestContext,
        user_id: Option<Uuid>,
        at: DateTime<Utc>,
    ) -> Result<(), AppError> {
        let id = Uuid::new_v4();
        let failure = PendingFailure {
            id,
            user_id,
            address: address_of(context),
            ip: context.request_ip.clone(),
            failed_at: at,
            metadata: Json(context.metadata_for(id)),
        };
        let counted = self.store_and_count(&failure).await?;
        let this = self.clone();
        let stored = std::time::Instant::now();
        tokio::spawn(async move {
            if let Err(error) = this.settle(&failure, Some(stored)).await {
                tracing::warn!(failure_id = %failure.id, %error, "a failed login is left to recovery");
            }
        });
        self.refuse_beyond_threshold(counted)
    }

    /// For a failed check that keeps nothing (an erased person's login):
    /// the `429` that [`FailedLogins::record`] would give, so the answer is
    /// the same as for any other failure from the address.
    pub async fn refuse_if_threshold_reached(
        &self,
        context: &RequestContext,
        at: DateTime<Utc>,
    ) -> Result<(), AppError> {
        let Some(address) = address_of(context) else {
            return Ok(());
        };
        let failures: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM login_address_failures WHERE address = $1 AND failed_at > $2",
        )
        .bind(address)
        .bind(at - self.policy.window)
        .fetch_one(&self.pool)
        .await?;
        self.refuse_beyond_threshold(Some(failures + 1))
    }

    /// `429` when `failures` (this one included) exceed the threshold: the
    /// block was set by the failure that reached it.
    fn refuse_beyond_threshold(&self, failures: Option<i64>) -> Result<(), AppError> {
        match failures {
            Some(failures) if failures > i64::from(self.policy.threshold) => {
                Err(AppError::TooManyRequests {
                    retry_after_seconds: u64::try_from(self.policy.block.num_seconds())
                        .unwrap_or(1)
                        .max(1),
                })
            }
            _ => Ok(()),
        }
    }

    /// Stores the failure and counts it for its address in one
    /// transaction; how many failures the address has in the window, this
    /// one included (`None` without an address).
    async fn store_and_count(&self, failure: &PendingFailure) -> sqlx::Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        store(&mut tx, failure).await?;
        let counted = match &failure.address {
            Some(address) => count_for_address(&mut tx, &self.policy, address, failure).await?,
            None => None,
        };
        tx.commit().await?;
        Ok(counted)
    }

    /// Settles the failures whose lease ran out, left by a process that
    /// stopped before settling them; returns how many it took.
    pub async fn recover(&self) -> Result<usize, sqlx::Error> {
        let leased: Vec<PendingFailure> = sqlx::query_as(
            "UPDATE pending_login_failures SET leased_until = now() + $1 \
             WHERE id IN (SELECT id FROM pending_login_failures WHERE leased_until < now() \
                          ORDER BY leased_until LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING id, user_id, address, ip, failed_at, metadata",
        )
        .bind(LEASE)
        .bind(RECOVERY_BATCH)
        .fetch_all(&self.pool)
        .await?;
        for failure in &leased {
            if let Err(error) = self.settle(failure, None).await {
                tracing::warn!(failure_id = %failure.id, %error, "could not recover a failed login");
            }
        }
        Ok(leased.len())
    }

    /// Runs [`FailedLogins::recover`] every `interval` until `shutdown`.
    pub async fn recover_until(self, interval: std::time::Duration, shutdown: Shutdown) {
        loop {
            match self.recover().await {
                Ok(n) if n > 0 => {
                    tracing::info!(recovered = n, "settled failed logins left pending")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "could not look for pending failed logins"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// Appends the failure's `user.login_failed` (unless an earlier attempt
    /// did), counts it for its address unless it was (a failure stored
    /// before it was counted with it), and removes it. `stored` is
    /// when this process stored it; `None` when recovering.
    async fn settle(
        &self,
        failure: &PendingFailure,
        stored: Option<std::time::Instant>,
    ) -> Result<(), SettleError> {
        if let Some(user_id) = failure.user_id {
            if stored.is_some_and(|stored| stored.elapsed() > SETTLE_WITHIN) {
                return Err(SettleError::TooLate);
            }
            if stored.is_some() || !self.appended(user_id, failure.id).await? {
                self.append(user_id, failure).await?;
            }
        }
        let mut tx = self.pool.begin().await?;
        if let Some(address) = &failure.address {
            count_for_address(&mut tx, &self.policy, address, failure).await?;
        }
        sqlx::query("DELETE FROM pending_login_failures WHERE id = $1")
            .bind(failure.id)
            .execute(&mut *tx)
            .await?;
        Ok(tx.commit().await?)
    }

    /// A user the domain refuses the failure for (erased, say) has nothing
    /// to append; any other error leaves the failure pending.
    async fn append(&self, user_id: Uuid, failure: &PendingFailure) -> Result<(), SettleError> {
        let command = UserCommand::RecordLoginFailure {
            ip: failure.ip.clone(),
            at: failure.failed_at,
        };
        match self
            .users
            .execute(&user_id.to_string(), command, &failure.metadata)
            .await
        {
            Ok(_) | Err(AggregateError::UserError(_)) => Ok(()),
            Err(error) => Err(SettleError::Append(error)),
        }
    }

    /// Whether the user's stream has the failure's event already.
    async fn appended(&self, user_id: Uuid, failure_id: Uuid) -> sqlx::Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events WHERE aggregate_type = $1 \
             AND aggregate_id = $2 AND event_type = $3 AND metadata->>$4 = $5)",
        )
        .bind(<User as Aggregate>::TYPE)
        .bind(user_id.to_string())
        .bind(UserEvent::LOGIN_FAILED.name())
        .bind(metadata_keys::CAUSATION_ID)
        .bind(failure_id.to_string())
        .fetch_one(&self.pool)
        .await
    }
}

async fn store(tx: &mut sqlx::PgConnection, failure: &PendingFailure) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO pending_login_failures \
             (id, user_id, address, ip, failed_at, metadata, leased_until) \
         VALUES ($1, $2, $3, $4, $5, $6, now() + $7)",
    )
    .bind(failure.id)
    .bind(failure.user_id)
    .bind(&failure.address)
    .bind(&failure.ip)
    .bind(failure.failed_at)
    .bind(&failure.metadata)
    .bind(LEASE)
    .execute(tx)
    .await?;
    Ok(())
}

/// Counts the failure for the address (once), forgets the address's
/// failures older than the window, and blocks the address once the window
/// holds `threshold`. Failures of one address take turns (an advisory
/// lock), so each sees the ones before it, in any api process. Returns the
/// failures in the window, this one included, if this call counted it.
async fn count_for_address(
    tx: &mut sqlx::PgConnection,
    policy: &AddressPolicy,
    address: &str,
    failure: &PendingFailure,
) -> sqlx::Result<Option<i64>> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(ADDRESS_LOCK_SPACE)
        .bind(address)
        .execute(&mut *tx)
        .await?;
    let since = failure.failed_at - policy.window;
    sqlx::query("DELETE FROM login_address_failures WHERE address = $1 AND failed_at <= $2")
        .bind(address)
        .bind(since)
        .execute(&mut *tx)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO login_address_failures (address, failed_at, failure_id) \
         VALUES ($1, $2, $3) ON CONFLICT (failure_id) DO NOTHING",
    )
    .bind(address)
    .bind(failure.failed_at)
    .bind(failure.id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    let failures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM login_address_failures WHERE address = $1 AND failed_at > $2",
    )
    .bind(address)
    .bind(since)
    .fetch_one(&mut *tx)
    .await?;
    if failures >= i64::from(policy.threshold) {
        block(
            &mut *tx,
            address,
            failure.failed_at + policy.block,
            failures,
        )
        .await?;
        metrics::counter!(crate::metrics::ADDRESSES_BLOCKED).increment(1);
    }
    Ok(Some(failures))
}

/// Blocks the address until `until`; a block is only ever extended.
async fn block(
    tx: &mut sqlx::PgConnection,
    address: &str,
    until: DateTime<Utc>,
    failures: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO login_ip_blocks (ip, blocked_until, failures) VALUES ($1, $2, $3) \
         ON CONFLICT (ip) DO UPDATE SET blocked_until = EXCLUDED.blocked_until, \
             failures = EXCLUDED.failures \
         WHERE login_ip_blocks.blocked_until < EXCLUDED.blocked_until",
    )
    .bind(address)
    .bind(until)
    .bind(i32::try_from(failures).unwrap_or(i32::MAX))
    .execute(tx)
    .await?;
    Ok(())
}

/// The key the caller's address is counted and blocked by, if it has one.
pub fn address_of(context: &RequestContext) -> Option<String> {
    let ip: IpAddr = context.request_ip.as_deref()?.parse().ok()?;
    Some(address_key(ip))
}

/// The key a client address is counted and blocked by: an IPv4 address as
/// it is, an IPv6 address by its /56 network, the prefix the rate limit
/// (actix-governor's `PeerIpKeyExtractor`) uses, since one subscriber
/// commonly holds a whole /56. An IPv4-mapped IPv6 address is its IPv4.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let network = u128::from(v6) & !(u128::MAX >> 56);
                format!("{}/56", std::net::Ipv6Addr::from(network))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_keyed_by_its_ipv4_or_its_ipv6_56() {
        let cases = [
            ("203.0.113.7", "203.0.113.7"),
            ("2001:db8:1:2ff::1", "2001:db8:1:200::/56"),
            ("2001:db8:1:200:ffff:ffff:ffff:ffff", "2001:db8:1:200::/56"),
            ("2001:db8:1:300::1", "2001:db8:1:300::/56"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
        ];
        for (ip, key) in cases {
            assert_eq!(address_key(ip.parse().unwrap()), key, "{ip}");
        }
    }
}
