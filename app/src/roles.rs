//! The write side for roles: a name unique among live roles (claimed like
//! an email), a description and a set of permissions.

use std::collections::BTreeSet;

use cqrs_es::AggregateError;
use domain::{Permission, Role, RoleCommand, RoleDescription, RoleError, RoleName};
use infra::commands::CommandBus;
use sqlx::PgPool;
use uuid::Uuid;

use crate::claims::{Claims, ROLE_NAME};
use crate::extract::RequestContext;
use crate::problem::ApiError;

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
    ) -> Result<(Uuid, i64), ApiError> {
        let role_id = Uuid::now_v7();
        let owner = role_id.to_string();
        let key = name.uniqueness_key();
        if !self
            .claims
            .claim(ROLE_NAME, &key, &owner)
            .await
            .map_err(ApiError::internal)?
        {
            return Err(ApiError::Conflict("a role with this name exists".into()));
        }
        let command = RoleCommand::Create {
            role_id,
            name,
            description,
            permissions,
        };
        let result = self
            .roles
            .execute(&owner, command, &context.metadata_as(actor))
            .await;
        // Frees nothing when the event was written: the trigger confirmed the claim.
        self.claims
            .release(ROLE_NAME, &key, &owner)
            .await
            .map_err(ApiError::internal)?;
        Ok((role_id, result.map_err(command_error)?.position))
    }

    pub async fn execute(
        &self,
        context: &RequestContext,
        actor: Uuid,
        role_id: Uuid,
        command: RoleCommand,
    ) -> Result<i64, ApiError> {
        let outcome = self
            .roles
            .execute(
                &role_id.to_string(),
                command,
                &context.metadata_as(Some(actor)),
            )
            .await
            .map_err(command_error)?;
        Ok(outcome.position)
    }
}

fn command_error(error: AggregateError<RoleError>) -> ApiError {
    match error {
        AggregateError::UserError(RoleError::NotFound) => ApiError::NotFound("role"),
        AggregateError::UserError(rule) => ApiError::Conflict(rule.to_string()),
        AggregateError::AggregateConflict => ApiError::ConcurrencyConflict,
        other => ApiError::internal(anyhow::anyhow!("command failed: {other}")),
    }
}
