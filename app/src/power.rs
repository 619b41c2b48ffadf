//! Who may change power, checked against the event store (not the read
//! models, which may lag): the caller must hold every permission they grant
//! or take away, and may act on another user only if that user holds
//! nothing the caller lacks; a change that would leave no active user with
//! every permission is refused. Power-removing changes are serialized across
//! processes, so two administrators removing each other cannot both win.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use domain::rbac::{self, Grants, Holder, PowerChange};
use domain::{Permission, Role, User, UserStatus};
use infra::commands::CommandBus;
use sqlx::PgPool;
use uuid::Uuid;

use crate::AppError;

/// Key of the advisory lock that serializes power-removing changes.
const POWER_LOCK: i64 = 0x0070_6f77_6572; // "power"

/// Power-removing changes of this process take turns here first, so that
/// at most one of them holds a pooled connection while it waits for the
/// advisory lock (waiters holding connections would starve the holder).
static IN_PROCESS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The caller of a use case and the permissions their roles grant. A
/// machine client is its service account (`user_id`, the principal's id)
/// acting with one API key, whose scope `permissions` is already narrowed to.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Uuid,
    pub permissions: BTreeSet<Permission>,
    pub api_key_id: Option<Uuid>,
}

impl Actor {
    /// An operator at the command line (`api admin ...`): every permission,
    /// and the nil id as `actor_id`. The rules that protect the service
    /// (the last administrator) still apply.
    pub fn operator() -> Self {
        Self {
            user_id: Uuid::nil(),
            permissions: Permission::ALL.iter().copied().collect(),
            api_key_id: None,
        }
    }

    /// Refuses with the first of `needed` the actor lacks.
    pub fn require_all(
        &self,
        needed: impl IntoIterator<Item = Permission>,
    ) -> Result<(), AppError> {
        match rbac::first_missing(&self.permissions, needed) {
            Some(missing) => Err(AppError::Forbidden(missing)),
            None => Ok(()),
        }
    }
}

pub struct PowerGuard {
    pool: PgPool,
    users: CommandBus<User>,
    roles: CommandBus<Role>,
}

impl PowerGuard {
    pub fn new(pool: PgPool) -> Self {
        Self {
            users: CommandBus::new(pool.clone()),
            roles: CommandBus::new(pool.clone()),
            pool,
        }
    }

    /// The permissions `user_id` holds now, from the event store.
    pub async fn permissions_of(&self, user_id: Uuid) -> Result<BTreeSet<Permission>, AppError> {
        let user = self.users.load(&user_id.to_string()).await?;
        let grants = self.grants(user.roles().iter().copied()).await?;
        Ok(grants.into_values().flatten().collect())
    }

    /// The permissions `role_id` grants now; `None` when no such role lives.
    pub async fn permissions_of_role(
        &self,
        role_id: Uuid,
    ) -> Result<Option<BTreeSet<Permission>>, AppError> {
        let role = self.roles.load(&role_id.to_string()).await?;
        Ok(role.exists().then(|| role.permissions().clone()))
    }

    /// Acting on oneself is always allowed; on another user only if they
    /// hold nothing the actor lacks.
    pub async fn require_outranks(&self, actor: &Actor, user_id: Uuid) -> Result<(), AppError> {
        if actor.user_id == user_id {
            return Ok(());
        }
        actor.require_all(self.permissions_of(user_id).await?)
    }

    /// Runs `command` unless `change` would leave no active user holding
    /// every permission (then [`AppError::LastAdministrator`]). The check and
    /// the command run under one lock shared by every process.
    pub async fn keeping_an_administrator<T, Fut>(
        &self,
        change: PowerChange,
        command: impl FnOnce() -> Fut,
    ) -> Result<T, AppError>
    where
        Fut: Future<Output = Result<T, AppError>>,
    {
        let _turn = IN_PROCESS.lock().await;
        // A transaction-level lock: released at commit, or at rollback when
        // this future is dropped half-way.
        let mut lock = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(POWER_LOCK)
            .execute(&mut *lock)
            .await?;
        let (holders, grants) = self.power_after_lock(&change).await?;
        if !rbac::keeps_a_full_administrator(holders, grants, &change) {
            return Err(AppError::LastAdministrator);
        }
        let result = command().await;
        lock.commit().await?;
        result
    }

    /// The users who may hold every permission and the roles they hold,
    /// as the event store has them. Candidates come from the grants, which
    /// commit with their events; their state comes from the event store.
    async fn power_after_lock(
        &self,
        change: &PowerChange,
    ) -> Result<(BTreeMap<Uuid, Holder>, Grants), AppError> {
        let mut candidates = self.candidates().await?;
        candidates.extend(change.user());
        let mut holders = BTreeMap::new();
        for user_id in candidates {
            let user = self.users.load(&user_id.to_string()).await?;
            holders.insert(
                user_id,
                Holder {
                    active: user.is_registered() && user.status() == UserStatus::Active,
                    roles: user.roles().clone(),
                },
            );
        }
        let role_ids: BTreeSet<Uuid> = holders.values().flat_map(|h| h.roles.clone()).collect();
        let grants = self.grants(role_ids).await?;
        Ok((holders, grants))
    }

    /// Users holding a live role with every permission, per the grants.
    async fn candidates(&self) -> Result<BTreeSet<Uuid>, AppError> {
        let all: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        let users: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT ur.user_id FROM user_role_grants ur \
             JOIN role_grants r USING (role_id) \
             WHERE r.permissions @> $1::text[]",
        )
        .bind(&all)
        .fetch_all(&self.pool)
        .await?;
        Ok(users.into_iter().collect())
    }

    /// What `role_ids` grant together now, from the event store.
    pub async fn permissions_of_roles(
        &self,
        role_ids: impl IntoIterator<Item = Uuid>,
    ) -> Result<BTreeSet<Permission>, AppError> {
        Ok(self
            .grants(role_ids)
            .await?
            .into_values()
            .flatten()
            .collect())
    }

    /// What each of `role_ids` grants now; deleted or unknown roles are absent.
    async fn grants(&self, role_ids: impl IntoIterator<Item = Uuid>) -> Result<Grants, AppError> {
        let mut grants = Grants::new();
        for role_id in role_ids {
            let role = self.roles.load(&role_id.to_string()).await?;
            if role.exists() {
                grants.insert(role_id, role.permissions().clone());
            }
        }
        Ok(grants)
    }
}
