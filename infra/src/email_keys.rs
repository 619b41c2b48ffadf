//! Moves the email claims and `users_view.email_key` written before the
//! canonical form (`domain::Email::uniqueness_key`) to it. SQL cannot compute
//! the form (UTS #46, NFKC, case folding), so this runs in Rust, once, after
//! the SQL migrations, and may run again without changing anything.
//!
//! Two accounts that existed before and are one mailbox in the canonical
//! form both keep working: the account that already held the canonical form,
//! or else the one registered first, gets it; each other keeps its claim in
//! the old form, marked with `canonical_value`. Login reaches it by that old
//! form, and the mailbox cannot be registered again while it is kept
//! (`app::claims`).

use std::collections::HashSet;

use domain::{ClaimScope, Email, UserEvent};
use sqlx::{PgConnection, PgPool};

const NAME: &str = "20261127000001_email_canonical_keys";

/// A user's current email and its confirmed claim, in registration order.
#[derive(sqlx::FromRow)]
struct HeldClaim {
    owner_id: String,
    email: String,
    value: String,
}

pub async fn migrate(pool: &PgPool) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    // Every binary migrates on start: one of them does the work.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(NAME)
        .execute(&mut *tx)
        .await?;
    let done: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM data_migrations WHERE name = $1)")
            .bind(NAME)
            .fetch_one(&mut *tx)
            .await?;
    if !done {
        rekey_claims(&mut tx).await?;
        rekey_users_view(&mut tx).await?;
        sqlx::query("INSERT INTO data_migrations (name) VALUES ($1)")
            .bind(NAME)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

async fn rekey_claims(conn: &mut PgConnection) -> sqlx::Result<()> {
    let scope = ClaimScope::USER_EMAIL.as_str();
    let mut taken: HashSet<String> =
        sqlx::query_scalar("SELECT value FROM unique_claims WHERE scope = $1")
            .bind(scope)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    for held in held_claims(conn).await? {
        let Ok(email) = Email::try_from(held.email) else {
            continue;
        };
        let key = email.uniqueness_key();
        if held.value == key {
            continue;
        }
        let moved = !taken.contains(&key);
        sqlx::query(
            "UPDATE unique_claims \
             SET value = CASE WHEN $5 THEN $4 ELSE value END, \
                 canonical_value = CASE WHEN $5 THEN NULL ELSE $4 END \
             WHERE scope = $1 AND owner_id = $2 AND value = $3",
        )
        .bind(scope)
        .bind(&held.owner_id)
        .bind(&held.value)
        .bind(&key)
        .bind(moved)
        .execute(&mut *conn)
        .await?;
        if moved {
            taken.remove(&held.value);
            taken.insert(key);
        }
    }
    Ok(())
}

/// Each user's confirmed email claim with the address of its last
/// `user.registered` or `user.email_changed` (the event store is the truth),
/// first registered first.
async fn held_claims(conn: &mut PgConnection) -> sqlx::Result<Vec<HeldClaim>> {
    let sql = format!(
        "WITH current AS ( \
           SELECT DISTINCT ON (aggregate_id) aggregate_id, \
                  COALESCE({registered}, {changed}) AS email, \
                  min(global_position) OVER (PARTITION BY aggregate_id) AS registered_at \
           FROM events \
           WHERE aggregate_type = $1 AND event_type IN ($2, $3) \
           ORDER BY aggregate_id, sequence DESC) \
         SELECT c.aggregate_id AS owner_id, c.email, u.value \
         FROM current c \
         JOIN unique_claims u ON u.scope = $4 AND u.owner_id = c.aggregate_id AND u.confirmed \
         ORDER BY c.registered_at",
        registered = UserEvent::REGISTERED_EMAIL.json_text(),
        changed = UserEvent::EMAIL_CHANGED_EMAIL.json_text(),
    );
    sqlx::query_as(&sql)
        .bind(UserEvent::REGISTERED.aggregate_type())
        .bind(UserEvent::REGISTERED.name())
        .bind(UserEvent::EMAIL_CHANGED.name())
        .bind(ClaimScope::USER_EMAIL.as_str())
        .fetch_all(&mut *conn)
        .await
}

/// The projector writes new rows with the new key; this rewrites the old
/// ones from the address the row shows.
async fn rekey_users_view(conn: &mut PgConnection) -> sqlx::Result<()> {
    let rows: Vec<(uuid::Uuid, String, String)> =
        sqlx::query_as("SELECT id, email, email_key FROM users_view")
            .fetch_all(&mut *conn)
            .await?;
    let (ids, keys): (Vec<uuid::Uuid>, Vec<String>) = rows
        .into_iter()
        .filter_map(|(id, email, old)| {
            let key = Email::try_from(email).ok()?.uniqueness_key();
            (key != old).then_some((id, key))
        })
        .unzip();
    sqlx::query(
        "UPDATE users_view v SET email_key = k.key \
         FROM unnest($1::uuid[], $2::text[]) AS k(id, key) WHERE v.id = k.id",
    )
    .bind(ids)
    .bind(keys)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
