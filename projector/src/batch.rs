//! A delivery batch applied to the live read models with a few set-based
//! statements: the rows of the batch's aggregates read at once, the events
//! folded in memory ([`InMemory`], the same reducers and rules as a single
//! event), then each table written once, every changed row guarded by the
//! sequence it was read at, and the audit log's rows inserted together.

use std::collections::{BTreeMap, HashMap, HashSet};

use bus::Envelope;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::apply::{self, ApplyError};
use crate::executor;
use crate::in_memory::{Held, InMemory};
use crate::set_based::{delete_pairs, insert_if_absent, update_at_sequence};
use crate::views::roles::RoleRow;
use crate::views::sessions::SessionRow;
use crate::views::user_roles::{Membership, UserRoleRow};
use crate::views::users::UserRow;
use crate::views::{AuditLogRow, Target, View, ViewRow, AUDIT_LOG, USER_ROLES_VIEW};

/// The sequence each held row was read at, by view and aggregate.
type ReadAt = HashMap<(View, Uuid), i64>;

/// Applies `events` in their order to the live views and the audit log, in
/// `db`'s transaction.
pub async fn apply(db: &mut PgConnection, events: &[Envelope]) -> Result<(), ApplyError> {
    let mut views = InMemory::default();
    let read_at = hold(db, &mut views, events).await?;
    let mut recorded = BTreeMap::new();
    for envelope in events {
        if let Some(view) = View::of_aggregate(&envelope.aggregate_type) {
            // Events loaded to fill a gap are recorded too: they may never
            // be delivered.
            for missing in apply::fold(db, &mut views, view, envelope).await? {
                recorded.insert(missing.global_position, AuditLogRow::of(&missing));
            }
        }
        recorded.insert(envelope.global_position, AuditLogRow::of(envelope));
    }
    erase_locked(db, &mut views, &read_at).await?;
    write::<UserRow>(db, &views, &read_at).await?;
    write::<RoleRow>(db, &views, &read_at).await?;
    write::<SessionRow>(db, &views, &read_at).await?;
    write_memberships(db, views.membership_changes()).await?;
    for user_id in views.erasures() {
        executor::erase_sessions(db, *user_id).await?;
    }
    let rows: Vec<_> = recorded.values().map(AuditLogRow::columns).collect();
    insert_if_absent(db, AUDIT_LOG, AuditLogRow::KEY, &rows).await?;
    Ok(())
}

/// Reads the rows of every aggregate the events are of, one query a view.
async fn hold(
    db: &mut PgConnection,
    views: &mut InMemory,
    events: &[Envelope],
) -> sqlx::Result<ReadAt> {
    let mut ids: HashMap<View, Vec<Uuid>> = HashMap::new();
    for envelope in events {
        let view = View::of_aggregate(&envelope.aggregate_type);
        // A malformed id is refused by the fold, with the event's details.
        if let (Some(view), Ok(id)) = (view, apply::aggregate_id(envelope)) {
            ids.entry(view).or_default().push(id);
        }
    }
    let mut read_at = ReadAt::new();
    for (view, ids) in ids {
        match view {
            View::Users => hold_rows::<UserRow>(db, views, &mut read_at, &ids).await?,
            View::Roles => hold_rows::<RoleRow>(db, views, &mut read_at, &ids).await?,
            View::Sessions => hold_rows::<SessionRow>(db, views, &mut read_at, &ids).await?,
        }
    }
    Ok(read_at)
}

async fn hold_rows<R: Held>(
    db: &mut PgConnection,
    views: &mut InMemory,
    read_at: &mut ReadAt,
    ids: &[Uuid],
) -> sqlx::Result<()> {
    let rows: Vec<R> = executor::load_many(db, Target::Live, ids).await?;
    read_at.extend(
        rows.iter()
            .map(|row| ((R::VIEW, row.key()), row.sequence())),
    );
    views.hold(rows);
    Ok(())
}

/// Under the locks of the people whose rows changed (see
/// `executor::write`), their rows keep nothing of the erased among them.
async fn erase_locked(
    db: &mut PgConnection,
    views: &mut InMemory,
    read_at: &ReadAt,
) -> sqlx::Result<()> {
    let people: Vec<Uuid> = changed::<SessionRow>(views, read_at)
        .into_iter()
        .filter_map(|(_, row)| row.person())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let erased = infra::erased::erased_among_locked(db, &people).await?;
    if !erased.is_empty() {
        views.erase::<SessionRow>(&erased);
    }
    Ok(())
}

/// The rows the fold changed, by id, each with the sequence it was read at
/// (none for a new row).
fn changed<'v, R: Held>(views: &'v InMemory, read_at: &ReadAt) -> Vec<(Option<i64>, &'v R)> {
    let mut rows: Vec<(Option<i64>, &R)> = views
        .rows::<R>()
        .iter()
        .filter_map(|(id, row)| {
            let before = read_at.get(&(R::VIEW, *id)).copied();
            (before != Some(row.sequence())).then_some((before, row))
        })
        .collect();
    // One order for every writer, so that two never wait on each other.
    rows.sort_by_key(|(_, row)| row.key());
    rows
}

/// Inserts the new rows and updates the changed ones, each only if no other
/// writer got there first; else the batch is retried.
async fn write<R: Held + Sync>(
    db: &mut PgConnection,
    views: &InMemory,
    read_at: &ReadAt,
) -> Result<(), ApplyError> {
    let (mut inserts, mut updates) = (Vec::new(), Vec::new());
    for (before, row) in changed::<R>(views, read_at) {
        match before {
            None => inserts.push(row.columns()),
            Some(sequence) => updates.push((sequence, row.columns())),
        }
    }
    let view = R::VIEW;
    let (table, key) = (view.name(), view.key_column());
    let inserted = insert_if_absent(db, table, &[key], &inserts).await?;
    let updated = update_at_sequence(db, table, key, &updates).await?;
    let expected = inserts.len() + updates.len();
    let written = inserted + updated;
    if written != expected as u64 {
        return Err(ApplyError::RacedRows {
            aggregate_type: view.aggregate_type(),
            expected,
            written,
        });
    }
    Ok(())
}

/// What a batch's membership changes come to for one user and role.
#[derive(Clone, Debug, PartialEq)]
enum Net {
    Removed,
    /// Added unless held (an assignment in force stays).
    Added(UserRoleRow),
    /// Removed, then added: this assignment is the one in force.
    Replaced(UserRoleRow),
}

fn net(changes: &[Membership]) -> BTreeMap<(Uuid, Uuid), Net> {
    let mut net = BTreeMap::new();
    for change in changes {
        match change {
            Membership::Assigned(row) => {
                let key = (row.user_id, row.role_id);
                match net.get(&key) {
                    None => net.insert(key, Net::Added(row.clone())),
                    Some(Net::Removed) => net.insert(key, Net::Replaced(row.clone())),
                    Some(Net::Added(_) | Net::Replaced(_)) => None,
                };
            }
            Membership::Unassigned { user_id, role_id } => {
                net.insert((*user_id, *role_id), Net::Removed);
            }
        }
    }
    net
}

async fn write_memberships(db: &mut PgConnection, changes: &[Membership]) -> sqlx::Result<()> {
    let net = net(changes);
    let removed: Vec<(Uuid, Uuid)> = net
        .iter()
        .filter(|(_, net)| !matches!(net, Net::Added(_)))
        .map(|(key, _)| *key)
        .collect();
    let [user, role] = [UserRoleRow::KEY[0], UserRoleRow::KEY[1]];
    delete_pairs(db, USER_ROLES_VIEW, [user, role], &removed).await?;
    let added: Vec<_> = net
        .values()
        .filter_map(|net| match net {
            Net::Added(row) | Net::Replaced(row) => Some(row.columns()),
            Net::Removed => None,
        })
        .collect();
    insert_if_absent(db, USER_ROLES_VIEW, UserRoleRow::KEY, &added).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    const USER: Uuid = Uuid::from_u128(1);
    const ROLE: Uuid = Uuid::from_u128(2);

    fn assigned(global_position: i64) -> Membership {
        Membership::Assigned(row(global_position))
    }

    fn row(global_position: i64) -> UserRoleRow {
        UserRoleRow {
            user_id: USER,
            role_id: ROLE,
            assigned_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            global_position,
        }
    }

    fn unassigned() -> Membership {
        Membership::Unassigned {
            user_id: USER,
            role_id: ROLE,
        }
    }

    #[test]
    fn a_batch_of_membership_changes_comes_to_the_last_state_with_the_assignment_in_force() {
        let cases = [
            (vec![assigned(1)], Net::Added(row(1))),
            (vec![assigned(1), assigned(2)], Net::Added(row(1))),
            (vec![assigned(1), unassigned()], Net::Removed),
            (vec![unassigned(), assigned(2)], Net::Replaced(row(2))),
            (
                vec![unassigned(), assigned(2), assigned(3)],
                Net::Replaced(row(2)),
            ),
            (
                vec![assigned(1), unassigned(), assigned(3)],
                Net::Replaced(row(3)),
            ),
        ];
        for (changes, expected) in cases {
            assert_eq!(
                net(&changes).into_values().collect::<Vec<_>>(),
                [expected],
                "{changes:?}"
            );
        }
    }
}
