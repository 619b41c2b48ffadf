//! A scripted life of roles and sessions around registered users: every
//! kind of role and session event, and the user events that come with them
//! (assignments, failed logins, locks, rehashes), interleaved in the log.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use domain::session::ReuseInterval;
use domain::{
    PasswordHash, Permission, RefreshTokenHash, RevocationReason, RoleCommand, RoleDescription,
    RoleName, SessionCommand, UserCommand,
};
use infra::testing::now;
use uuid::Uuid;

use super::writer::{TestUser, Writer};

/// Idle timeout of every test session.
pub const IDLE_SECONDS: i64 = 600;

/// What the script created, in creation order.
#[derive(Debug, Default)]
pub struct Identity {
    pub roles: Vec<Uuid>,
    pub sessions: Vec<Uuid>,
}

/// Runs the script over `users` (registered and active). `tag` keeps role
/// names unique when a test runs it more than once.
pub async fn identity_traffic(writer: &Writer, users: &[TestUser], tag: &str) -> Identity {
    let mut identity = Identity::default();
    for index in 0..4 {
        identity
            .roles
            .push(create_role(writer, &format!("{tag}-role-{index}"), index).await);
    }
    let roles = identity.roles.clone();
    for (index, user) in users.iter().enumerate() {
        assign(writer, user.id, roles[index % 4]).await;
        assign(writer, user.id, roles[(index + 1) % 4]).await;
        if index.is_multiple_of(3) {
            unassign(writer, user.id, roles[index % 4]).await;
        }
        lockout(writer, user.id, index).await;
        identity
            .sessions
            .push(session(writer, user.id, index).await);
    }
    set_permissions(writer, roles[0], &[Permission::AuditRead]).await;
    // Assigned to users, then deleted: the assignments stay in the view.
    writer.execute_role(roles[1], RoleCommand::Delete).await;
    set_permissions(writer, roles[2], &[]).await;
    for (index, user) in users
        .iter()
        .enumerate()
        .filter(|(index, _)| index.is_multiple_of(2))
    {
        assign(writer, user.id, roles[(index + 2) % 4]).await;
        identity
            .sessions
            .push(session(writer, user.id, index + 1).await);
    }
    identity
}

pub async fn create_role(writer: &Writer, name: &str, index: usize) -> Uuid {
    let role_id = Uuid::now_v7();
    let permissions: BTreeSet<Permission> = Permission::ALL
        .iter()
        .copied()
        .skip(index)
        .step_by(2)
        .collect();
    writer
        .execute_role(
            role_id,
            RoleCommand::Create {
                role_id,
                // Mixed case: the view keeps the name and a lowercased key.
                name: RoleName::parse(&name.to_uppercase()).expect("role name"),
                description: RoleDescription::parse(&format!("Role {index}")).expect("text"),
                permissions,
            },
        )
        .await;
    role_id
}

pub async fn set_permissions(writer: &Writer, role_id: Uuid, permissions: &[Permission]) {
    let permissions = permissions.iter().copied().collect();
    writer
        .execute_role(role_id, RoleCommand::SetPermissions { permissions })
        .await;
}

pub async fn assign(writer: &Writer, user_id: Uuid, role_id: Uuid) {
    writer
        .execute(user_id, UserCommand::AssignRole { role_id })
        .await;
}

pub async fn unassign(writer: &Writer, user_id: Uuid, role_id: Uuid) {
    writer
        .execute(user_id, UserCommand::UnassignRole { role_id })
        .await;
}

/// Failed logins, a lock, for some an early unlock and a rehash.
async fn lockout(writer: &Writer, user_id: Uuid, index: usize) {
    if !index.is_multiple_of(2) {
        return;
    }
    let at = now();
    let ip = Some(format!("192.0.2.{index}"));
    writer
        .execute(user_id, UserCommand::RecordLoginFailure { ip, at })
        .await;
    let until = at + TimeDelta::minutes(15);
    let lock = UserCommand::Lock {
        until,
        failures: 5,
        now: at,
    };
    writer.execute(user_id, lock).await;
    if index.is_multiple_of(4) {
        writer
            .execute(user_id, UserCommand::Unlock { now: at })
            .await;
        let password_hash = PasswordHash::new(format!("$argon2id$v=19$rehashed{index}"));
        writer
            .execute(user_id, UserCommand::RehashPassword { password_hash })
            .await;
    }
}

/// A session that is refreshed, then by `variant` revoked, expired (after
/// its absolute or its idle deadline) or left active.
async fn session(writer: &Writer, user_id: Uuid, variant: usize) -> Uuid {
    let session_id = Uuid::now_v7();
    let started_at = now();
    let start = SessionCommand::Start {
        second_factor_used: false,
        session_id,
        user_id,
        refresh_token_hash: token(session_id, 0),
        started_at,
        expires_at: started_at + TimeDelta::hours(1),
        idle_timeout_seconds: IDLE_SECONDS,
        ip: variant
            .is_multiple_of(2)
            .then(|| format!("198.51.100.{variant}")),
        user_agent: (!variant.is_multiple_of(3)).then(|| format!("agent/{variant}")),
    };
    writer.execute_session(session_id, start).await;
    let refreshed_at = started_at + TimeDelta::minutes(5);
    refresh(writer, session_id, 1, refreshed_at).await;
    let ending = match variant % 4 {
        0 => SessionCommand::Revoke {
            reason: RevocationReason::LoggedOut,
            now: refreshed_at,
        },
        1 => SessionCommand::Expire {
            now: started_at + TimeDelta::hours(2),
        },
        2 => SessionCommand::Expire {
            now: refreshed_at + TimeDelta::seconds(IDLE_SECONDS),
        },
        _ => return refresh(writer, session_id, 2, refreshed_at + TimeDelta::minutes(1)).await,
    };
    writer.execute_session(session_id, ending).await;
    session_id
}

async fn refresh(writer: &Writer, session_id: Uuid, number: u8, at: DateTime<Utc>) -> Uuid {
    let refresh = SessionCommand::Refresh {
        presented: token(session_id, number - 1),
        next: token(session_id, number),
        reuse_interval: ReuseInterval::NONE,
        now: at,
    };
    writer.execute_session(session_id, refresh).await;
    session_id
}

fn token(session_id: Uuid, number: u8) -> RefreshTokenHash {
    RefreshTokenHash::new(format!("{}{number:02x}", session_id.simple()))
}
