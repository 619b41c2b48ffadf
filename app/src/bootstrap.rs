//! The first administrator (`api admin bootstrap`), created by an operator
//! on the command line because no HTTP route may create one. Running it again
//! creates only what is missing and never changes an existing password.

use std::collections::BTreeSet;
use std::sync::Arc;

use domain::{
    ClaimScope, DisplayName, Email, Password, Permission, Role, RoleCommand, RoleDescription,
    RoleName,
};
use infra::commands::CommandBus;
use sqlx::PgPool;
use uuid::Uuid;

use crate::claims::Claims;
use crate::failed_logins::{AddressPolicy, FailedLogins};
use crate::password::Passwords;
use crate::roles::RoleCommands;
use crate::users::{Registrant, UserCommands};
use crate::{AppError, RequestContext};

pub const ADMIN_ROLE: &str = "admin";

#[derive(Debug)]
pub struct Bootstrapped {
    pub role_id: Uuid,
    pub user_id: Uuid,
    pub created_role: bool,
    pub created_user: bool,
}

pub async fn bootstrap(
    pool: PgPool,
    email: Email,
    display_name: DisplayName,
    password: Password,
    passwords: std::sync::Arc<Passwords>,
) -> Result<Bootstrapped, AppError> {
    let context = RequestContext {
        correlation_id: Uuid::new_v4().to_string(),
        request_ip: None,
        user_agent: Some("api admin bootstrap".into()),
    };
    let claims = Claims::new(pool.clone());
    let (role_id, created_role) = admin_role(&pool, &claims, &context).await?;
    let owner = claims.email_owner(&email).await?;
    let (user_id, created_user) = match owner {
        Some(user_id) => (user_id, false),
        None => {
            let failed_logins = FailedLogins::new(pool.clone(), AddressPolicy::DEFAULT);
            let users = UserCommands::new(pool.clone(), passwords, Arc::new(failed_logins));
            let registered = users
                .register(
                    &context,
                    Registrant::Operator,
                    email,
                    display_name,
                    password,
                )
                .await?;
            (registered.user_id, true)
        }
    };
    let users = CommandBus::<domain::User>::new(pool.clone());
    users
        .execute(
            &user_id.to_string(),
            domain::UserCommand::AssignRole { role_id },
            &context.metadata_as(None),
        )
        .await?;
    Ok(Bootstrapped {
        role_id,
        user_id,
        created_role,
        created_user,
    })
}

/// The `admin` role, created if missing, granting every permission.
async fn admin_role(
    pool: &PgPool,
    claims: &Claims,
    context: &RequestContext,
) -> Result<(Uuid, bool), AppError> {
    let all: BTreeSet<Permission> = Permission::ALL.iter().copied().collect();
    let name = RoleName::parse(ADMIN_ROLE).expect("the admin role's name is valid");
    if let Some(role_id) = claims
        .owner(ClaimScope::ROLE_NAME, &name.uniqueness_key())
        .await?
    {
        let roles = CommandBus::<Role>::new(pool.clone());
        roles
            .execute(
                &role_id.to_string(),
                RoleCommand::SetPermissions { permissions: all },
                &context.metadata_as(None),
            )
            .await?;
        return Ok((role_id, false));
    }
    let (role_id, _) = RoleCommands::new(pool.clone())
        .create(
            context,
            None,
            name,
            RoleDescription::parse("Every permission; created by api admin bootstrap")
                .expect("the admin role's description is valid"),
            all,
        )
        .await?;
    Ok((role_id, true))
}
