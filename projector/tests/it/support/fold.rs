//! The read models as the projector wrote them, and as they must be: each
//! aggregate's events in the event store, in sequence order, folded in
//! memory through the views' own reducers (unit tested on their own), into
//! the same row types the live tables are read into; and the audit log, one
//! row per stored event as `AuditLogRow::of` makes it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bus::Envelope;
use infra::event_log;
use infra::testing::eventually;
use projector::views::roles::{RoleRow, RolesView};
use projector::views::sessions::{SessionRow, SessionsView};
use projector::views::user_roles::{Membership, UserRoleRow};
use projector::views::users::{UserRow, UsersView};
use projector::views::{
    AuditLogRow, EventContext, Projection, View, ViewChange, ViewRow, AUDIT_LOG, ROLES_VIEW,
    SESSIONS_VIEW, USERS_VIEW, USER_ROLES_VIEW,
};
use sqlx::PgPool;
use uuid::Uuid;

use super::TIMEOUT;

/// Every table of every read model, every row, every column, in key order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Views {
    pub users: Vec<UserRow>,
    pub user_roles: Vec<UserRoleRow>,
    pub roles: Vec<RoleRow>,
    pub sessions: Vec<SessionRow>,
    pub audit_log: Vec<AuditLogRow>,
}

/// A user's roles by role id.
type Held = BTreeMap<Uuid, UserRoleRow>;

impl Views {
    /// The live tables.
    pub async fn read(pool: &PgPool) -> Self {
        Self {
            users: rows(pool, USERS_VIEW).await,
            user_roles: user_role_rows(pool).await,
            roles: rows(pool, ROLES_VIEW).await,
            sessions: rows(pool, SESSIONS_VIEW).await,
            audit_log: audit_log_rows(pool, AUDIT_LOG).await,
        }
    }

    /// The fold of the event store.
    pub async fn expected(pool: &PgPool) -> Self {
        let mut views = Self::default();
        for (id, events) in streams(pool, View::Users).await {
            let mut held = Held::new();
            views.users.push(fold::<UsersView>(id, &events, &mut held));
            views.user_roles.extend(held.into_values());
            views.record(&events);
        }
        for (id, events) in streams(pool, View::Roles).await {
            views
                .roles
                .push(fold::<RolesView>(id, &events, &mut Held::new()));
            views.record(&events);
        }
        for (id, events) in streams(pool, View::Sessions).await {
            views
                .sessions
                .push(fold::<SessionsView>(id, &events, &mut Held::new()));
            views.record(&events);
        }
        views.audit_log.sort_by_key(|row| row.global_position);
        views
    }

    /// Adds the audit log rows of `events` (every aggregate type has a view,
    /// so every stored event passes through here).
    fn record(&mut self, events: &[Envelope]) {
        self.audit_log.extend(events.iter().map(AuditLogRow::of));
    }
}

/// Every row of `table`, a view's first table or a rebuild's copy of it,
/// ordered by its key.
pub async fn rows<R: ViewRow>(pool: &PgPool, table: &str) -> Vec<R> {
    let sql = format!("SELECT * FROM {table} ORDER BY {}", R::VIEW.key_column());
    sqlx::query_as(&sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// Every row of `table`, the audit log or a rebuild's copy of it, ordered by
/// global position.
pub async fn audit_log_rows(pool: &PgPool, table: &str) -> Vec<AuditLogRow> {
    let sql = format!("SELECT * FROM {table} ORDER BY global_position");
    sqlx::query_as(&sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

async fn user_role_rows(pool: &PgPool) -> Vec<UserRoleRow> {
    let sql = format!(
        "SELECT user_id, role_id, assigned_at, global_position \
         FROM {USER_ROLES_VIEW} ORDER BY user_id, role_id"
    );
    sqlx::query_as(&sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .into_iter()
        .map(
            |(user_id, role_id, assigned_at, global_position)| UserRoleRow {
                user_id,
                role_id,
                assigned_at,
                global_position,
            },
        )
        .collect()
}

/// Every stream of the view's aggregate type, each in sequence order
/// without a gap, ordered by aggregate id.
async fn streams(pool: &PgPool, view: View) -> Vec<(Uuid, Vec<Envelope>)> {
    let aggregate_type = view.aggregate_type();
    let mut ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1")
            .bind(aggregate_type)
            .fetch_all(pool)
            .await
            .expect("list aggregates")
            .iter()
            .map(|id: &String| Uuid::parse_str(id).expect("a UUID aggregate id"))
            .collect();
    ids.sort();
    let mut streams = Vec::with_capacity(ids.len());
    for id in ids {
        let events = event_log::read_stream(pool, aggregate_type, &id.to_string(), 0, i64::MAX)
            .await
            .expect("read a stream");
        let sequences: Vec<i64> = events.iter().map(|event| event.sequence).collect();
        let expected: Vec<i64> = (1..=events.len() as i64).collect();
        assert_eq!(sequences, expected, "gap in the event store");
        streams.push((id, events));
    }
    streams
}

/// When the event's command ran, as the views record it.
pub fn occurred_at(envelope: &Envelope) -> chrono::DateTime<chrono::Utc> {
    envelope
        .metadata
        .occurred_at
        .unwrap_or(envelope.recorded_at)
}

/// Aggregate `id`'s row after `events`; the roles a user holds in `held`.
fn fold<P: Projection>(id: Uuid, events: &[Envelope], held: &mut Held) -> P::Row {
    let mut row = None;
    for envelope in events {
        let event: P::Event = event_log::decode(envelope).expect("stored event decodes");
        let at = EventContext {
            aggregate_id: id,
            sequence: envelope.sequence,
            global_position: envelope.global_position,
            occurred_at: occurred_at(envelope),
        };
        let change = P::reduce(row.as_ref(), &event, &at)
            .unwrap_or_else(|error| panic!("{} {id}: {error}", envelope.event_type));
        match change.membership() {
            Some(Membership::Assigned(assigned)) => {
                held.entry(assigned.role_id)
                    .or_insert_with(|| assigned.clone());
            }
            Some(Membership::Unassigned { role_id, .. }) => {
                held.remove(role_id);
            }
            None => {}
        }
        row = Some(change.into_row());
    }
    row.expect("an aggregate with events")
}

/// Waits until every read model equals the fold of the event store;
/// returns it.
/// On timeout, prints what still differs.
pub async fn wait_for_fold(pool: &PgPool) -> Views {
    let expected = Views::expected(pool).await;
    let last_seen = Mutex::new(Views::default());
    let report = MismatchReport {
        expected: &expected,
        last_seen: &last_seen,
    };
    eventually(TIMEOUT, "every read model to equal the fold", || async {
        let views = Views::read(pool).await;
        let matches = views == expected;
        *last_seen.lock().unwrap() = views;
        matches.then_some(())
    })
    .await;
    drop(report);
    expected
}

struct MismatchReport<'a> {
    expected: &'a Views,
    last_seen: &'a Mutex<Views>,
}

impl Drop for MismatchReport<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let seen = self.last_seen.lock().map(|v| v.clone()).unwrap_or_default();
        let expected = self.expected;
        report(USERS_VIEW, &expected.users, &seen.users);
        report(USER_ROLES_VIEW, &expected.user_roles, &seen.user_roles);
        report(ROLES_VIEW, &expected.roles, &seen.roles);
        report(SESSIONS_VIEW, &expected.sessions, &seen.sessions);
        report(AUDIT_LOG, &expected.audit_log, &seen.audit_log);
    }
}

fn report<T: PartialEq + std::fmt::Debug>(table: &str, expected: &[T], seen: &[T]) {
    eprintln!("{table}: {} rows, the fold {}", seen.len(), expected.len());
    for row in expected.iter().filter(|row| !seen.contains(row)).take(3) {
        eprintln!("  expected, missing: {row:?}");
    }
    for row in seen.iter().filter(|row| !expected.contains(row)).take(3) {
        eprintln!("  unexpected: {row:?}");
    }
}
