//! `roles_view`, `user_roles_view` and `sessions_view` as the projector
//! wrote them, and as they must be: each aggregate's events in the event
//! store applied to its `domain` aggregate.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bus::Envelope;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::{ContractEvent, Role, RoleEvent, Session, SessionEnd, User, UserEvent};
use infra::event_log;
use infra::testing::eventually;
use projector::views::{ROLES_VIEW, SESSIONS_VIEW, USER_ROLES_VIEW};
use sqlx::PgPool;
use uuid::Uuid;

use super::TIMEOUT;

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct RoleRow {
    pub role_id: Uuid,
    pub name: String,
    pub name_key: String,
    pub description: String,
    pub permissions: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub sequence: i64,
    pub global_position: i64,
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct UserRoleRow {
    pub user_id: Uuid,
    pub role_id: Uuid,
    pub assigned_at: DateTime<Utc>,
    pub global_position: i64,
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct SessionRow {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub status: String,
    pub end_reason: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub idle_timeout_seconds: i64,
    pub last_activity_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub sequence: i64,
    pub global_position: i64,
}

/// The three views, every row, in key order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdentityViews {
    pub roles: Vec<RoleRow>,
    pub user_roles: Vec<UserRoleRow>,
    pub sessions: Vec<SessionRow>,
}

impl IdentityViews {
    /// The live tables.
    pub async fn read(pool: &PgPool) -> Self {
        Self {
            roles: rows(pool, ROLES_VIEW, "role_id").await,
            user_roles: rows(pool, USER_ROLES_VIEW, "user_id, role_id").await,
            sessions: rows(pool, SESSIONS_VIEW, "session_id").await,
        }
    }

    /// The fold of the event store.
    pub async fn expected(pool: &PgPool) -> Self {
        let mut views = Self::default();
        for events in streams(pool, Role::TYPE).await {
            views.roles.push(fold_role(&events));
        }
        for events in streams(pool, User::TYPE).await {
            views.user_roles.extend(fold_user_roles(&events));
        }
        for events in streams(pool, Session::TYPE).await {
            views.sessions.push(fold_session(&events));
        }
        views.roles.sort_by_key(|row| row.role_id);
        views
            .user_roles
            .sort_by_key(|row| (row.user_id, row.role_id));
        views.sessions.sort_by_key(|row| row.session_id);
        views
    }
}

/// Every row of `table` in `order`.
async fn rows<T>(pool: &PgPool, table: &str, order: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let sql = format!("SELECT * FROM {table} ORDER BY {order}");
    sqlx::query_as(&sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// Every stream of `aggregate_type`, each in sequence order without a gap.
async fn streams(pool: &PgPool, aggregate_type: &str) -> Vec<Vec<Envelope>> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1")
            .bind(aggregate_type)
            .fetch_all(pool)
            .await
            .expect("list aggregates");
    let mut streams = Vec::with_capacity(ids.len());
    for id in ids {
        let events = event_log::read_stream(pool, aggregate_type, &id, 0, i64::MAX)
            .await
            .expect("read a stream");
        let sequences: Vec<i64> = events.iter().map(|event| event.sequence).collect();
        let expected: Vec<i64> = (1..=events.len() as i64).collect();
        assert_eq!(sequences, expected, "gap in the event store");
        streams.push(events);
    }
    streams
}

fn decode<E: ContractEvent>(envelope: &Envelope) -> E {
    event_log::decode(envelope).expect("stored event decodes")
}

pub fn occurred_at(envelope: &Envelope) -> DateTime<Utc> {
    envelope
        .metadata
        .occurred_at
        .unwrap_or(envelope.recorded_at)
}

fn fold_role(events: &[Envelope]) -> RoleRow {
    let mut role = Role::default();
    for envelope in events {
        role.apply(decode::<RoleEvent>(envelope));
    }
    let (first, last) = (&events[0], &events[events.len() - 1]);
    let name = role.name().expect("created role has a name");
    RoleRow {
        role_id: role.id().expect("created role has an id"),
        name: name.as_str().to_owned(),
        name_key: name.uniqueness_key(),
        description: role.description().expect("description").as_str().to_owned(),
        permissions: role
            .permissions()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        created_at: occurred_at(first),
        updated_at: occurred_at(last),
        // Nothing follows a deletion.
        deleted_at: role.is_deleted().then(|| occurred_at(last)),
        sequence: last.sequence,
        global_position: last.global_position,
    }
}

/// A user's roles, each with the event that assigned it last.
fn fold_user_roles(events: &[Envelope]) -> Vec<UserRoleRow> {
    let mut user = User::default();
    let mut assigned: BTreeMap<Uuid, &Envelope> = BTreeMap::new();
    for envelope in events {
        let event: UserEvent = decode(envelope);
        match &event {
            UserEvent::RoleAssigned { role_id } => {
                assigned.entry(*role_id).or_insert(envelope);
            }
            UserEvent::RoleUnassigned { role_id } => {
                assigned.remove(role_id);
            }
            _ => {}
        }
        user.apply(event);
    }
    let user_id = user.id().expect("registered user has an id");
    assert!(
        assigned.keys().eq(user.roles().iter()),
        "roles of {user_id}"
    );
    assigned
        .into_iter()
        .map(|(role_id, envelope)| UserRoleRow {
            user_id,
            role_id,
            assigned_at: occurred_at(envelope),
            global_position: envelope.global_position,
        })
        .collect()
}

fn fold_session(events: &[Envelope]) -> SessionRow {
    let mut session = Session::default();
    for envelope in events {
        session.apply(decode(envelope));
    }
    let last = &events[events.len() - 1];
    let (status, end_reason) = match session.ended() {
        None => ("active", None),
        Some(SessionEnd::Revoked { reason, .. }) => ("revoked", Some(reason.as_str())),
        Some(SessionEnd::Expired { reason, .. }) => ("expired", Some(reason.as_str())),
    };
    SessionRow {
        session_id: session.id().expect("started session has an id"),
        user_id: session.user_id().expect("user"),
        status: status.to_owned(),
        end_reason: end_reason.map(str::to_owned),
        ip: session.ip().map(str::to_owned),
        user_agent: session.user_agent().map(str::to_owned),
        started_at: session.started_at().expect("started_at"),
        expires_at: session.expires_at().expect("expires_at"),
        idle_timeout_seconds: session.idle_timeout_seconds(),
        last_activity_at: session.last_activity_at().expect("last_activity_at"),
        idle_expires_at: session.idle_deadline().expect("idle deadline"),
        ended_at: session.ended().map(SessionEnd::at),
        sequence: last.sequence,
        global_position: last.global_position,
    }
}

/// Waits until the three views equal the fold of the event store; returns
/// them. On timeout, prints what still differs.
pub async fn wait_for_identity_fold(pool: &PgPool) -> IdentityViews {
    let expected = IdentityViews::expected(pool).await;
    let last_seen = Mutex::new(IdentityViews::default());
    let report = MismatchReport {
        expected: &expected,
        last_seen: &last_seen,
    };
    eventually(
        TIMEOUT,
        "roles_view, user_roles_view and sessions_view to equal the fold",
        || async {
            let views = IdentityViews::read(pool).await;
            let matches = views == expected;
            *last_seen.lock().unwrap() = views;
            matches.then_some(())
        },
    )
    .await;
    drop(report);
    expected
}

struct MismatchReport<'a> {
    expected: &'a IdentityViews,
    last_seen: &'a Mutex<IdentityViews>,
}

impl Drop for MismatchReport<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let seen = self.last_seen.lock().map(|v| v.clone()).unwrap_or_default();
        report(ROLES_VIEW, &self.expected.roles, &seen.roles);
        report(USER_ROLES_VIEW, &self.expected.user_roles, &seen.user_roles);
        report(SESSIONS_VIEW, &self.expected.sessions, &seen.sessions);
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
