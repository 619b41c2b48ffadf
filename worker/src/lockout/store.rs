//! The worker's own lockout tables: failures (`login_failures`) and where
//! each user's count restarts (`lockout_resets`). Every function runs in the
//! batch's transaction. Client addresses are counted and blocked by the api
//! (`login_address_failures`, `login_ip_blocks`), not here.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use domain::UserEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use super::policy::{Consumed, CountedWindow, Stored, Window};

/// Advisory lock namespace (first key of `pg_advisory_xact_lock(int, int)`):
/// two workers counting failures of one user take turns, so neither misses
/// the other's failure.
const USER_LOCK_SPACE: i32 = 0x776b_7501; // "wku\x01"

/// Stores a failure once, keyed by its event id; whether this call stored it.
/// The client address is kept for forensics; nothing counts by it. Nothing
/// is stored for an erased user: a failure delivered late (published before
/// the erasure) must not bring their address back.
pub async fn record_failure(
    tx: &mut PgConnection,
    event_id: Uuid,
    user_id: Uuid,
    ip: Option<&str>,
    failed_at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let stored = sqlx::query(
        "INSERT INTO login_failures (event_id, user_id, ip, failed_at) \
         SELECT $1, $2, $3, $4 WHERE NOT EXISTS ( \
             SELECT 1 FROM events \
             WHERE aggregate_type = $5 AND aggregate_id = $2::text AND event_type = $6) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(user_id)
    .bind(ip)
    .bind(failed_at)
    .bind(UserEvent::ERASED.aggregate_type())
    .bind(UserEvent::ERASED.name())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(stored == 1)
}

/// Drops the erased user's failures (with their client addresses) and
/// their count's restart point.
pub async fn forget(tx: &mut PgConnection, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM login_failures WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM lockout_resets WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// What a failure in `window` is judged by: each stored failure of the user
/// whose window holds it, with the failures that window counts, all since
/// the user's count last restarted, oldest first.
pub async fn stored(tx: &mut PgConnection, user_id: Uuid, window: Window) -> sqlx::Result<Stored> {
    let rows: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
        "WITH restart AS (SELECT COALESCE( \
             (SELECT reset_at FROM lockout_resets WHERE user_id = $1), '-infinity') AS at) \
         SELECT ending.failed_at, \
                (SELECT count(*) FROM login_failures counted \
                 WHERE counted.user_id = $1 \
                   AND counted.failed_at > ending.failed_at - $3 \
                   AND counted.failed_at <= ending.failed_at \
                   AND counted.failed_at > restart.at) \
         FROM login_failures ending, restart \
         WHERE ending.user_id = $1 AND ending.failed_at >= $2 \
           AND ending.failed_at < $2 + $3 AND ending.failed_at > restart.at \
         ORDER BY ending.failed_at, ending.event_id",
    )
    .bind(user_id)
    .bind(window.at)
    .bind(window.length)
    .fetch_all(&mut *tx)
    .await?;
    let windows = rows
        .into_iter()
        .map(|(ends_at, failures)| CountedWindow {
            ends_at,
            failures: saturating_u32(failures),
        })
        .collect();
    Ok(Stored { windows })
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

/// Takes the advisory locks of every user in the batch, in one order, so
/// that concurrent workers neither miss each other's failures nor deadlock.
/// A hash collision only makes two users take turns needlessly.
pub async fn take_turns<'a>(
    tx: &mut PgConnection,
    events: impl IntoIterator<Item = &'a Consumed>,
) -> sqlx::Result<()> {
    let keys: BTreeSet<i32> = events
        .into_iter()
        .map(|event| lock_key(&event.user_id().to_string()))
        .collect();
    let keys: Vec<i32> = keys.into_iter().collect();
    // unnest yields the (sorted) array in order: every worker locks in one order.
    sqlx::query("SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int[]) AS t(k)")
        .bind(USER_LOCK_SPACE)
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
