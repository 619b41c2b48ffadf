//! The `users_view` read model: one row per user, copied from the values the
//! events carry. Each row keeps the sequence of the last event applied to it.

use bus::Envelope;
use chrono::{DateTime, Utc};
use domain::{UserEvent, UserStatus};
use sqlx::PgConnection;
use uuid::Uuid;

pub const LIVE_TABLE: &str = "users_view";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event {event_id} does not decode as a user event: {source}")]
    Decode {
        event_id: Uuid,
        source: serde_json::Error,
    },
    #[error("user {0} is not a UUID")]
    BadId(String),
    #[error("user {user_id}: expected sequence {expected}, the event store has {found:?}")]
    MissingEvents {
        user_id: Uuid,
        expected: i64,
        found: Option<i64>,
    },
    #[error("user {0} changed under us; retry")]
    Raced(Uuid),
}

/// Applies a user event to `table` unless it was applied already. An event
/// ahead of the row (a lost or early delivery) first has the missing events
/// loaded from the event store, which is the truth; the broker carries news.
pub async fn apply(
    db: &mut PgConnection,
    table: &str,
    envelope: &Envelope,
) -> Result<(), ApplyError> {
    let user_id = Uuid::parse_str(&envelope.aggregate_id)
        .map_err(|_| ApplyError::BadId(envelope.aggregate_id.clone()))?;
    let last = last_sequence(db, table, user_id).await?;
    if envelope.sequence <= last {
        return Ok(());
    }
    let mut expected = last + 1;
    if envelope.sequence > expected {
        let missing = infra::event_log::read_stream(
            &mut *db,
            &envelope.aggregate_type,
            &envelope.aggregate_id,
            last,
            envelope.sequence - 1,
        )
        .await?;
        for event in &missing {
            check_next(user_id, expected, Some(event.sequence))?;
            apply_next(db, table, user_id, event).await?;
            expected += 1;
        }
    }
    check_next(user_id, expected, Some(envelope.sequence))?;
    apply_next(db, table, user_id, envelope).await
}

fn check_next(user_id: Uuid, expected: i64, found: Option<i64>) -> Result<(), ApplyError> {
    if found == Some(expected) {
        Ok(())
    } else {
        Err(ApplyError::MissingEvents {
            user_id,
            expected,
            found,
        })
    }
}

async fn last_sequence(
    db: &mut PgConnection,
    table: &str,
    user_id: Uuid,
) -> Result<i64, sqlx::Error> {
    let sequence: Option<i64> =
        sqlx::query_scalar(&format!("SELECT sequence FROM {table} WHERE id = $1"))
            .bind(user_id)
            .fetch_optional(db)
            .await?;
    Ok(sequence.unwrap_or(0))
}

/// Applies the event that directly follows the row's sequence.
async fn apply_next(
    db: &mut PgConnection,
    table: &str,
    user_id: Uuid,
    envelope: &Envelope,
) -> Result<(), ApplyError> {
    let event: UserEvent =
        serde_json::from_value(envelope.payload.clone()).map_err(|source| ApplyError::Decode {
            event_id: envelope.event_id,
            source,
        })?;
    let at = occurred_at(envelope);
    let changed = match &event {
        UserEvent::Registered {
            email,
            display_name,
            ..
        } => {
            sqlx::query(&format!(
                "INSERT INTO {table} (id, email, email_key, display_name, status, registered_at, \
                   updated_at, sequence, global_position) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8) ON CONFLICT (id) DO NOTHING"
            ))
            .bind(user_id)
            .bind(email.as_str())
            .bind(email.uniqueness_key())
            .bind(display_name.as_str())
            .bind(UserStatus::Active.as_str())
            .bind(at)
            .bind(envelope.sequence)
            .bind(envelope.global_position)
            .execute(&mut *db)
            .await?
        }
        other => update(db, table, user_id, envelope, at, other).await?,
    };
    if changed.rows_affected() == 1 {
        Ok(())
    } else {
        Err(ApplyError::Raced(user_id))
    }
}

async fn update(
    db: &mut PgConnection,
    table: &str,
    user_id: Uuid,
    envelope: &Envelope,
    at: DateTime<Utc>,
    event: &UserEvent,
) -> Result<sqlx::postgres::PgQueryResult, sqlx::Error> {
    // Only the columns the event carries change; the sequence guard makes a
    // concurrent writer fail instead of applying twice.
    let (set, first, second): (&str, Option<String>, Option<String>) = match event {
        UserEvent::EmailChanged { email, .. } => (
            "email = $5, email_key = $6",
            Some(email.as_str().to_string()),
            Some(email.uniqueness_key()),
        ),
        UserEvent::DisplayNameChanged { display_name } => (
            "display_name = $5",
            Some(display_name.as_str().to_string()),
            None,
        ),
        UserEvent::Deactivated => (
            "status = $5",
            Some(UserStatus::Deactivated.as_str().into()),
            None,
        ),
        UserEvent::Reactivated => (
            "status = $5",
            Some(UserStatus::Active.as_str().into()),
            None,
        ),
        _ => ("id = id", None, None),
    };
    let sql = format!(
        "UPDATE {table} SET {set}, sequence = $2, global_position = $3, updated_at = $4 \
         WHERE id = $1 AND sequence = $2 - 1"
    );
    let mut query = sqlx::query(&sql)
        .bind(user_id)
        .bind(envelope.sequence)
        .bind(envelope.global_position)
        .bind(at);
    for value in [first, second].into_iter().flatten() {
        query = query.bind(value);
    }
    query.execute(db).await
}

fn occurred_at(envelope: &Envelope) -> DateTime<Utc> {
    envelope
        .metadata
        .occurred_at
        .unwrap_or(envelope.recorded_at)
}
