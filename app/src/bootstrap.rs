//! `api admin bootstrap`: the first administrator, created by an operator
//! on the command line because no HTTP route may create one. Running it again
//! creates only what is missing and never changes an existing password.

use std::collections::BTreeSet;

use domain::{
    DisplayName, Email, Password, Permission, Role, RoleCommand, RoleDescription, RoleName,
};
use infra::commands::CommandBus;
use sqlx::PgPool;
use uuid::Uuid;

use crate::claims::{ROLE_NAME, USER_EMAIL};
use crate::extract::RequestContext;
use crate::password::Passwords;
use crate::role_commands::RoleCommands;
use crate::user_commands::UserCommands;

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
) -> anyhow::Result<Bootstrapped> {
    let context = RequestContext {
        correlation_id: Uuid::new_v4().to_string(),
        request_ip: None,
        user_agent: Some("api admin bootstrap".into()),
    };
    let (role_id, created_role) = admin_role(&pool, &context).await?;
    let (user_id, created_user) =
        match claim_owner(&pool, USER_EMAIL, &email.uniqueness_key()).await? {
            Some(user_id) => (user_id, false),
            None => {
                let users = UserCommands::new(pool.clone(), Passwords::new(0).await?);
                let registered = users
                    .register(&context, None, email, display_name, password)
                    .await
                    .map_err(|error| anyhow::anyhow!("registering the administrator: {error}"))?;
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
        .await
        .map_err(|error| anyhow::anyhow!("assigning the admin role: {error}"))?;
    Ok(Bootstrapped {
        role_id,
        user_id,
        created_role,
        created_user,
    })
}

/// The `admin` role, created if missing, granting every permission.
async fn admin_role(pool: &PgPool, context: &RequestContext) -> anyhow::Result<(Uuid, bool)> {
    let all: BTreeSet<Permission> = Permission::ALL.iter().copied().collect();
    if let Some(role_id) = claim_owner(pool, ROLE_NAME, ADMIN_ROLE).await? {
        let roles = CommandBus::<Role>::new(pool.clone());
        roles
            .execute(
                &role_id.to_string(),
                RoleCommand::SetPermissions { permissions: all },
                &context.metadata_as(None),
            )
            .await
            .map_err(|error| anyhow::anyhow!("updating the admin role: {error}"))?;
        return Ok((role_id, false));
    }
    let (role_id, _) = RoleCommands::new(pool.clone())
        .create(
            context,
            None,
            RoleName::parse(ADMIN_ROLE)?,
            RoleDescription::parse("Every permission; created by api admin bootstrap")?,
            all,
        )
        .await
        .map_err(|error| anyhow::anyhow!("creating the admin role: {error}"))?;
    Ok((role_id, true))
}

async fn claim_owner(pool: &PgPool, scope: &str, value: &str) -> anyhow::Result<Option<Uuid>> {
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT owner_id FROM unique_claims WHERE scope = $1 AND value = $2 AND confirmed",
    )
    .bind(scope)
    .bind(value)
    .fetch_optional(pool)
    .await?;
    Ok(owner.map(|id| Uuid::parse_str(&id)).transpose()?)
}

/// The password: the first line of the file, or of standard input.
pub fn read_password(file: Option<&std::path::Path>) -> anyhow::Result<Password> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)?,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line
        }
    };
    let line = text.lines().next().unwrap_or_default();
    Password::parse(line).map_err(|error| anyhow::anyhow!("password: {error}"))
}
