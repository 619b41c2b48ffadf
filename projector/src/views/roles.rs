//! `roles_view`: one row per role ever created. A deleted role keeps its
//! row, marked `deleted_at`, so that its sequence still guards against late
//! and duplicate deliveries.

use std::collections::BTreeSet;

use bus::Envelope;
use domain::{Permission, RoleEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::apply::{decode, guarded_update, guarded_update_sql, occurred_at, ApplyError};
use crate::views::{Target, View};

/// Applies the event that directly follows the role's row; false if the
/// row was not at the previous sequence.
pub(crate) async fn apply_next(
    db: &mut PgConnection,
    target: Target,
    role_id: Uuid,
    envelope: &Envelope,
) -> Result<bool, ApplyError> {
    let event: RoleEvent = decode(envelope)?;
    let table = target.table(View::Roles.name());
    let at = occurred_at(envelope);
    let result = match &event {
        RoleEvent::Created {
            name,
            description,
            permissions,
            ..
        } => {
            sqlx::query(&format!(
                "INSERT INTO {table} (role_id, name, name_key, description, permissions, \
                   created_at, updated_at, sequence, global_position) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8) ON CONFLICT (role_id) DO NOTHING"
            ))
            .bind(role_id)
            .bind(name.as_str())
            .bind(name.uniqueness_key())
            .bind(description.as_str())
            .bind(names(permissions))
            .bind(at)
            .bind(envelope.sequence)
            .bind(envelope.global_position)
            .execute(db)
            .await?
        }
        RoleEvent::PermissionsChanged { permissions } => {
            let sql = update_sql(&table, "updated_at = $4, permissions = $5");
            guarded_update(&sql, role_id, envelope)
                .bind(at)
                .bind(names(permissions))
                .execute(db)
                .await?
        }
        RoleEvent::Deleted { .. } => {
            let sql = update_sql(&table, "updated_at = $4, deleted_at = $4");
            guarded_update(&sql, role_id, envelope)
                .bind(at)
                .execute(db)
                .await?
        }
    };
    Ok(result.rows_affected() == 1)
}

fn update_sql(table: &str, set: &str) -> String {
    guarded_update_sql(table, View::Roles.key_column(), set)
}

/// In the set's order, so that equal sets are equal arrays.
fn names(permissions: &BTreeSet<Permission>) -> Vec<&'static str> {
    permissions
        .iter()
        .map(|permission| permission.as_str())
        .collect()
}
