//! What the database does once a person is erased, as the code sees it
//! (migration `20261207000002_erasure_under_concurrency.sql`): the table of
//! erased people, the per-person advisory lock that orders appends against
//! an erasure, and the refusal of a session start for an erased person.

use cqrs_es::AggregateError;
use sqlx::PgConnection;
use uuid::Uuid;

/// Advisory lock namespace (first key of `pg_advisory_xact_lock(int, int)`,
/// the second is `hashtext(user_id)`): exclusive while `user.erased` is
/// recorded, shared by every append for the person and every read-model
/// write of their values.
pub const LOCK_SPACE: i32 = 0x6572_6101; // "era\x01"

/// The SQLSTATE with which the event store refuses to start a session for
/// an erased person.
pub const REFUSED: &str = "ERA01";

/// The key a personal metadata value (`domain::PersonalMetadata`) is stored
/// under in an event's metadata: what erasure blanks and what a verifier
/// lets read "[erased]".
pub fn metadata_key(metadata: domain::PersonalMetadata) -> &'static str {
    use bus::metadata_keys::{REQUEST_IP, USER_AGENT};
    match metadata {
        domain::PersonalMetadata::RequestIp => REQUEST_IP,
        domain::PersonalMetadata::UserAgent => USER_AGENT,
    }
}

/// Whether the event store refused the command's events because the person
/// they start a session for is erased.
pub fn refused_as_erased<E: std::error::Error>(error: &AggregateError<E>) -> bool {
    let cause: &(dyn std::error::Error + 'static) = match error {
        AggregateError::UnexpectedError(cause) | AggregateError::DatabaseConnectionError(cause) => {
            cause.as_ref()
        }
        _ => return false,
    };
    std::iter::successors(Some(cause), |error| error.source()).any(|error| {
        error
            .downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
            .and_then(|database| database.code())
            .is_some_and(|code| code == REFUSED)
    })
}

/// Whether `user_id` is erased, asked under the person's shared lock (held
/// until `db`'s transaction ends): an erasure committing meanwhile waits
/// for that end, so whatever the transaction writes for the person either
/// precedes the erasure or knows of it.
pub async fn is_erased_locked(db: &mut PgConnection, user_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1, hashtext($2))")
        .bind(LOCK_SPACE)
        .bind(user_id.to_string())
        .execute(&mut *db)
        .await?;
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM erased_users WHERE user_id = $1)")
        .bind(user_id.to_string())
        .fetch_one(&mut *db)
        .await
}

/// [`is_erased_locked`] for many people at once: which of `people` are
/// erased, asked under each one's shared lock (taken in one order).
pub async fn erased_among_locked(
    db: &mut PgConnection,
    people: &[Uuid],
) -> sqlx::Result<std::collections::HashSet<Uuid>> {
    if people.is_empty() {
        return Ok(Default::default());
    }
    let mut people: Vec<String> = people.iter().map(Uuid::to_string).collect();
    people.sort_unstable();
    sqlx::query(
        "SELECT pg_advisory_xact_lock_shared($1, hashtext(person)) \
         FROM unnest($2::text[]) WITH ORDINALITY AS p(person, n) ORDER BY n",
    )
    .bind(LOCK_SPACE)
    .bind(&people)
    .execute(&mut *db)
    .await?;
    let erased: Vec<Uuid> =
        sqlx::query_scalar("SELECT user_id::uuid FROM erased_users WHERE user_id = ANY($1)")
            .bind(&people)
            .fetch_all(db)
            .await?;
    Ok(erased.into_iter().collect())
}

/// Everyone erased by now, unlocked: for a bulk pass whose writes a later
/// locked step re-checks (a rebuild's swap).
pub async fn erased_people(db: &mut PgConnection) -> sqlx::Result<std::collections::HashSet<Uuid>> {
    let people: Vec<Uuid> = sqlx::query_scalar("SELECT user_id::uuid FROM erased_users")
        .fetch_all(db)
        .await?;
    Ok(people.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use bus::metadata_keys::{ACTOR_ID, REQUEST_IP, USER_AGENT};

    use super::*;

    const MIGRATION: &str =
        include_str!("../../migrations/20261207000002_erasure_under_concurrency.sql");

    #[test]
    fn the_migration_names_the_keys_the_marker_the_lock_and_the_refusal_of_the_code() {
        for key in [ACTOR_ID, REQUEST_IP, USER_AGENT, domain::ERASED] {
            assert!(MIGRATION.contains(&format!("'{key}'")), "{key}");
        }
        assert!(MIGRATION.contains(&format!("pg_advisory_xact_lock({LOCK_SPACE}, ")));
        assert!(MIGRATION.contains(&format!("pg_advisory_xact_lock_shared({LOCK_SPACE}, ")));
        assert!(MIGRATION.contains(&format!("ERRCODE = '{REFUSED}'")));
    }

    #[test]
    fn only_the_refusal_reads_as_erased() {
        let conflict: AggregateError<std::io::Error> = AggregateError::AggregateConflict;
        assert!(!refused_as_erased(&conflict));
        let other: AggregateError<std::io::Error> =
            AggregateError::UnexpectedError(Box::new(sqlx::Error::RowNotFound));
        assert!(!refused_as_erased(&other));
    }
}
