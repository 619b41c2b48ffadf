//! The write side for roles: a name unique among live roles (claimed like
//! an email), a description and a set of permissions.

use std::collections::BTreeSet;

use domain::{ClaimScope, Permission, Role, RoleCommand, RoleDescription, RoleName};
use infra::commands::CommandBus;
use sqlx::PgPool;
use uuid::Uuid;

use crate::claims::{Claim, Claims};
use crate::{AppError, RequestContext};

pub struct RoleCommands {
    roles: CommandBus<Role>,
    claims: Claims,
}

impl RoleCommands {
    pub fn new(pool: PgPool) -> Self {
        Self {
            roles: CommandBus::new(pool.clone()),
            claims: Claims::new(pool),
        }
    }

    /// Creates a role; returns its id and the position of `role.created`.
    pub async fn create(
        &self,
        context: &RequestContext,
        actor: Option<Uuid>,
        name: RoleName,
        description: RoleDescription,
        permissions: BTreeSet<Permission>,
    ) -> Result<(Uuid, i64), AppError> {
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
        let metadata = context.metadata_as(actor);
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

    pub async fn execute(
        &self,
        context: &RequestContext,
        actor: Uuid,
        role_id: Uuid,
        command: RoleCommand,
    ) -> Result<i64, AppError> {
        let outcome = self
            .roles
            .execute(
                &role_id.to_string(),
                command,
                &context.metadata_as(Some(actor)),
            )
            .await?;
        Ok(outcome.position)
    }
}
