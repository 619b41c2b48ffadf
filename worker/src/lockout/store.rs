//! The worker's own lockout tables: failures (`login_failures`), where each
//! user's count restarts (`lockout_resets`) and blocked client addresses
//! (`login_ip_blocks`). Every function runs in the batch's transaction.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::policy::{AddressFailures, Consumed, Stored, Window};

/// Advisory lock namespaces (first key of `pg_advisory_xact_lock(int, int)`):
/// two workers counting failures of one user or one address take turns, so
/// neither misses the other's failure.
const USER_LOCK_SPACE: i32 = 0x776b_7501; // "wku\x01"
const IP_LOCK_SPACE: i32 = 0x776b_7502;

/// Stores a failure once, keyed by its event id; whether this call stored it.
pub async fn record_failure(
    tx: &mut PgConnection,
    event_id: Uuid,
    user_id: Uuid,
    ip: Option<&str>,
    failed_at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let stored = sqlx::query(
        "INSERT INTO login_failures (event_id, user_id, ip, failed_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(user_id)
    .bind(ip)
    .bind(failed_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(stored == 1)
}

/// The failures a failure in `window` is judged by.
pub async fn stored(
    tx: &mut PgConnection,
    user_id: Uuid,
    ip: Option<&str>,
    window: Window,
) -> sqlx::Result<Stored> {
    let user_failures = user_failures(tx, user_id, window).await?;
    let address = match ip {
        Some(ip) => Some(AddressFailures {
            failures: address_failures(tx, ip, window).await?,
            blocked_until: blocked_until(tx, ip).await?,
        }),
        None => None,
    };
    Ok(Stored {
        user_failures,
        address,
    })
}

/// Failures of the user in the window after the user's count last restarted.
async fn user_failures(tx: &mut PgConnection, user_id: Uuid, window: Window) -> sqlx::Result<u32> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM login_failures \
         WHERE user_id = $1 AND failed_at > $2 AND failed_at <= $3 \
           AND failed_at > COALESCE( \
               (SELECT reset_at FROM lockout_resets WHERE user_id = $1), '-infinity')",
    )
    .bind(user_id)
    .bind(window.after)
    .bind(window.until)
    .fetch_one(&mut *tx)
    .await?;
    Ok(saturating_u32(count))
}

/// Failures from the address in the window, across all users.
async fn address_failures(tx: &mut PgConnection, ip: &str, window: Window) -> sqlx::Result<u32> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM login_failures WHERE ip = $1 AND failed_at > $2 AND failed_at <= $3",
    )
    .bind(ip)
    .bind(window.after)
    .bind(window.until)
    .fetch_one(&mut *tx)
    .await?;
    Ok(saturating_u32(count))
}

async fn blocked_until(tx: &mut PgConnection, ip: &str) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar("SELECT blocked_until FROM login_ip_blocks WHERE ip = $1")
        .bind(ip)
        .fetch_optional(&mut *tx)
        .await
}

/// Failures of the user up to `at` no longer count (never moves back).
pub async fn restart_count(
    tx: &mut PgConnection,
    user_id: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO lockout_resets (user_id, reset_at) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE \
             SET reset_at = GREATEST(lockout_resets.reset_at, EXCLUDED.reset_at)",
    )
    .bind(user_id)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Blocks the address until `until`; a block is only ever extended.
pub async fn block_address(
    tx: &mut PgConnection,
    ip: &str,
    until: DateTime<Utc>,
    failures: u32,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO login_ip_blocks (ip, blocked_until, failures) VALUES ($1, $2, $3) \
         ON CONFLICT (ip) DO UPDATE SET blocked_until = EXCLUDED.blocked_until, \
             failures = EXCLUDED.failures \
         WHERE login_ip_blocks.blocked_until < EXCLUDED.blocked_until",
    )
    .bind(ip)
    .bind(until)
    .bind(i32::try_from(failures).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Takes the advisory locks of every user and address in the batch, in one
/// order, so that concurrent workers neither miss each other's failures nor
/// deadlock. A hash collision only makes two keys take turns needlessly.
pub async fn take_turns<'a>(
    tx: &mut PgConnection,
    events: impl IntoIterator<Item = &'a Consumed>,
) -> sqlx::Result<()> {
    let mut keys = BTreeSet::new();
    for event in events {
        keys.insert((USER_LOCK_SPACE, lock_key(&event.user_id().to_string())));
        if let Consumed::LoginFailed { ip: Some(ip), .. } = event {
            keys.insert((IP_LOCK_SPACE, lock_key(ip)));
        }
    }
    let (spaces, keys): (Vec<i32>, Vec<i32>) = keys.into_iter().unzip();
    // unnest yields the (sorted) arrays in order: every worker locks in one order.
    sqlx::query("SELECT pg_advisory_xact_lock(s, k) FROM unnest($1::int[], $2::int[]) AS t(s, k)")
        .bind(&spaces)
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// FNV-1a: the same key in every worker process and version.
fn lock_key(name: &str) -> i32 {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    i32::from_ne_bytes(hash.to_ne_bytes())
}

fn saturating_u32(count: i64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}
