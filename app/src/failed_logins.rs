//! Failed credential checks (a login, or a password change with a wrong
//! current password), counted per client address by the api whatever the
//! email was, and per account as `user.login_failed` for the worker's
//! lockout. An address with too many failures in the window is blocked:
//! every login from it is then answered the same `429`, so the block says
//! nothing about which emails exist.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use domain::{User, UserCommand};
use infra::commands::CommandBus;
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

pub struct FailedLogins {
    pool: PgPool,
    users: Arc<CommandBus<User>>,
    policy: AddressPolicy,
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

    /// Records a failed check, off the response path so that every kind of
    /// failure answers in the same time: per address always, per account
    /// (`user.login_failed`) when `user_id` names one. Failures to record
    /// are logged.
    pub fn record(&self, context: &RequestContext, user_id: Option<Uuid>, at: DateTime<Utc>) {
        let address = address_of(context);
        let pool = self.pool.clone();
        let policy = self.policy;
        let users = self.users.clone();
        let command = UserCommand::RecordLoginFailure {
            ip: context.request_ip.clone(),
            at,
        };
        let metadata = context.metadata_as(None);
        tokio::spawn(async move {
            if let Some(address) = address {
                if let Err(error) = count_for_address(&pool, &policy, &address, at).await {
                    tracing::warn!(%error, "could not count a failed login for its address");
                }
            }
            if let Some(user_id) = user_id {
                let id = user_id.to_string();
                if let Err(error) = users.execute(&id, command, &metadata).await {
                    tracing::warn!(%user_id, %error, "could not record a failed login");
                }
            }
        });
    }
}

/// Stores the failure, forgets the address's failures older than the
/// window, and blocks the address once the window holds `threshold`.
async fn count_for_address(
    pool: &PgPool,
    policy: &AddressPolicy,
    address: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(ADDRESS_LOCK_SPACE)
        .bind(address)
        .execute(&mut *tx)
        .await?;
    let since = at - policy.window;
    sqlx::query("DELETE FROM login_address_failures WHERE address = $1 AND failed_at <= $2")
        .bind(address)
        .bind(since)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO login_address_failures (address, failed_at) VALUES ($1, $2)")
        .bind(address)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    let failures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM login_address_failures WHERE address = $1 AND failed_at > $2",
    )
    .bind(address)
    .bind(since)
    .fetch_one(&mut *tx)
    .await?;
    if failures >= i64::from(policy.threshold) {
        block(&mut tx, address, at + policy.block, failures).await?;
        metrics::counter!(crate::metrics::ADDRESSES_BLOCKED).increment(1);
    }
    tx.commit().await
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

fn address_of(context: &RequestContext) -> Option<String> {
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
