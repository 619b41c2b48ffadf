//! `users_view` (one row per user, copied from the values the events carry)
//! and `user_roles_view` (one row per role a user holds). Both come from
//! user events; `users_view.sequence` guards both.

use bus::Envelope;
use chrono::{DateTime, Utc};
use domain::{DisplayName, Email, UserEvent, UserStatus};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use crate::apply::{decode, guarded_update, guarded_update_sql, occurred_at, ApplyError};
use crate::views::{Target, View};

const USER_ROLES: &str = "user_roles_view";

/// Applies the event that directly follows the user's row; false if the
/// row was not at the previous sequence.
pub(crate) async fn apply_next(
    db: &mut PgConnection,
    target: Target,
    user_id: Uuid,
    envelope: &Envelope,
) -> Result<bool, ApplyError> {
    let event: UserEvent = decode(envelope)?;
    let users = target.table(View::Users.name());
    if let UserEvent::Registered {
        email,
        display_name,
        ..
    } = &event
    {
        return insert(db, &users, user_id, envelope, email, display_name).await;
    }
    let change = Change::of(&event);
    let sql = guarded_update_sql(&users, View::Users.key_column(), change.set());
    let query = guarded_update(&sql, user_id, envelope).bind(occurred_at(envelope));
    let updated = change.bind(query).execute(&mut *db).await?.rows_affected() == 1;
    if updated {
        apply_role_change(db, target, user_id, envelope, &event).await?;
    }
    Ok(updated)
}

async fn insert(
    db: &mut PgConnection,
    table: &str,
    user_id: Uuid,
    envelope: &Envelope,
    email: &Email,
    display_name: &DisplayName,
) -> Result<bool, ApplyError> {
    let inserted = sqlx::query(&format!(
        "INSERT INTO {table} (id, email, email_key, display_name, status, registered_at, \
           updated_at, sequence, global_position) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8) ON CONFLICT (id) DO NOTHING"
    ))
    .bind(user_id)
    .bind(email.as_str())
    .bind(email.uniqueness_key())
    .bind(display_name.as_str())
    .bind(UserStatus::Active.as_str())
    .bind(occurred_at(envelope))
    .bind(envelope.sequence)
    .bind(envelope.global_position)
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The columns of `users_view` an event changes besides its sequence,
/// position and `updated_at` (`$4`).
enum Change<'a> {
    Nothing,
    Email(&'a Email),
    DisplayName(&'a DisplayName),
    Status(UserStatus),
    LockedUntil(Option<DateTime<Utc>>),
}

impl<'a> Change<'a> {
    fn of(event: &'a UserEvent) -> Self {
        match event {
            UserEvent::EmailChanged { email, .. } => Self::Email(email),
            UserEvent::DisplayNameChanged { display_name } => Self::DisplayName(display_name),
            UserEvent::Deactivated => Self::Status(UserStatus::Deactivated),
            UserEvent::Reactivated => Self::Status(UserStatus::Active),
            UserEvent::Locked { until, .. } => Self::LockedUntil(Some(*until)),
            UserEvent::Unlocked => Self::LockedUntil(None),
            UserEvent::Registered { .. }
            | UserEvent::PasswordChanged { .. }
            | UserEvent::PasswordRehashed { .. }
            | UserEvent::RoleAssigned { .. }
            | UserEvent::RoleUnassigned { .. }
            | UserEvent::LoginFailed { .. } => Self::Nothing,
        }
    }

    fn set(&self) -> &'static str {
        match self {
            Self::Nothing => "updated_at = $4",
            Self::Email(_) => "updated_at = $4, email = $5, email_key = $6",
            Self::DisplayName(_) => "updated_at = $4, display_name = $5",
            Self::Status(_) => "updated_at = $4, status = $5",
            Self::LockedUntil(_) => "updated_at = $4, locked_until = $5",
        }
    }

    fn bind<'q>(
        &self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        match self {
            Self::Nothing => query,
            Self::Email(email) => query
                .bind(email.as_str().to_owned())
                .bind(email.uniqueness_key()),
            Self::DisplayName(name) => query.bind(name.as_str().to_owned()),
            Self::Status(status) => query.bind(status.as_str()),
            Self::LockedUntil(until) => query.bind(*until),
        }
    }
}

/// `user_roles_view` follows assignments; the caller has already advanced
/// the user's sequence, so this runs once per event.
async fn apply_role_change(
    db: &mut PgConnection,
    target: Target,
    user_id: Uuid,
    envelope: &Envelope,
    event: &UserEvent,
) -> Result<(), sqlx::Error> {
    let table = target.table(USER_ROLES);
    match event {
        UserEvent::RoleAssigned { role_id } => {
            sqlx::query(&format!(
                "INSERT INTO {table} (user_id, role_id, assigned_at, global_position) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, role_id) DO NOTHING"
            ))
            .bind(user_id)
            .bind(role_id)
            .bind(occurred_at(envelope))
            .bind(envelope.global_position)
            .execute(db)
            .await?;
        }
        UserEvent::RoleUnassigned { role_id } => {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE user_id = $1 AND role_id = $2"
            ))
            .bind(user_id)
            .bind(role_id)
            .execute(db)
            .await?;
        }
        _ => {}
    }
    Ok(())
}
