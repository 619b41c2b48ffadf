//! The write side for roles: a name unique among live roles (claimed like
//! an email), a description and a set of permissions.

use std::collections::BTreeSet;

use domain::rbac::PowerChange;
use domain::{ClaimScope, Permission, Role, RoleCommand, RoleDescription, RoleName};
use infra::commands::CommandBus;
use sqlx::PgPool;
use uuid::Uuid;

use crate::claims::{Claim, Claims};
use crate::power::{Actor, PowerGuard};
use crate::{AppError, RequestContext};

pub struct RoleCommands {
    roles: CommandBus<Role>,
    claims: Claims,
    power: PowerGuard,
}

impl RoleCommands {
    pub fn new(pool: PgPool) -> Self {
        Self {
            roles: CommandBus::new(pool.clone()),
            claims: Claims::new(pool.clone()),
            power: PowerGuard::new(pool),
        }
    }

    /// Creates a role; returns its id and the position of `role.created`.
    /// An actor must hold every permission the role grants; without one
    /// (the operator's bootstrap) nothing is checked.
    pub async fn create(
        &self,
        context: &RequestContext,
        actor: Option<&Actor>,
        name: RoleName,
        description: RoleDescription,
        permissions: BTreeSet<Permission>,
    ) -> Result<(Uuid, i64), AppError> {
        if let Some(actor) = actor {
            actor.require_all(permissions.iter().copied())?;
        }
        let metadata = match actor {
            Some(actor) => context.metadata_by(actor),
            None => context.metadata_as(None),
        };
        let role_id = Uuid::now_v7();
        let claim = Claim {
            scope: ClaimScope::ROLE_NAME,
            value: name.uniqueness_key(),
            owner: role_id,
        };
        let command = RoleCommand::Create {
            role_id,
            name,
            description,
            permissions,
        };
        let outcome = self
            .claims
            .while_claimed(Some(&claim), || async {
                Ok(self
                    .roles
                    .execute(&role_id.to_string(), command, &metadata)
                    .await?)
            })
            .await?;
        Ok((role_id, outcome.position))
    }

    /// Replaces the role's permissions: the actor must hold every permission
    /// the role grants before and after; never leaves no active user holding
    /// every permission.
    pub async fn set_permissions(
        &self,
        context: &RequestContext,
        actor: &Actor,
        role_id: Uuid,
        permissions: BTreeSet<Permission>,
    ) -> Result<i64, AppError> {
        let current = self.power.permissions_of_role(role_id).await?;
        actor.require_all(current.unwrap_or_default().union(&permissions).copied())?;
        let change = PowerChange::SetPermissions {
            role_id,
            permissions: permissions.clone(),
        };
        let command = RoleCommand::SetPermissions { permissions };
        self.power
            .keeping_an_administrator(change, || self.execute(context, actor, role_id, command))
            .await
    }

    /// Deletes the role: the actor must hold every permission it grants;
    /// never leaves no active user holding every permission.
    pub async fn delete(
        &self,
        context: &RequestContext,
        actor: &Actor,
        role_id: Uuid,
    ) -> Result<i64, AppError> {
        let current = self.power.permissions_of_role(role_id).await?;
        actor.require_all(current.unwrap_or_default())?;
        let change = PowerChange::DeleteRole { role_id };
        self.power
            .keeping_an_administrator(change, || {
                self.execute(context, actor, role_id, RoleCommand::Delete)
            })
            .await
    }

    async fn execute(
        &self,
        context: &RequestContext,
        actor: &Actor,
        role_id: Uuid,
        command: RoleCommand,
    ) -> Result<i64, AppError> {
        let outcome = self
            .roles
            .execute(&role_id.to_string(), command, &context.metadata_by(actor))
            .await?;
        Ok(outcome.position)
    }
}
