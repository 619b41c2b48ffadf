//! `api admin ...`: operator tasks run from the command line.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use app::bootstrap::{bootstrap, Bootstrapped};
use app::claims::Claims;
use app::failed_logins::{AddressPolicy, FailedLogins};
use app::password::Passwords;
use app::power::Actor;
use app::service_accounts::{KeyPolicy, KeyRequest, ServiceAccountCommands};
use app::users::UserCommands;
use app::RequestContext;
use domain::{
    ClaimScope, DisplayName, Email, Password, Permission, RoleName, ServiceAccountDescription,
    ServiceAccountName,
};
use infra::settings::CommonSettings;
use uuid::Uuid;

/// `api admin bootstrap`: the first administrator, from the command line
/// because no HTTP route may create one.
pub async fn bootstrap_admin(
    common: &CommonSettings,
    email: &str,
    display_name: &str,
    password_file: Option<&Path>,
) -> anyhow::Result<Bootstrapped> {
    let email = Email::parse(email).context("email")?;
    let display_name = DisplayName::parse(display_name).context("display name")?;
    let password = read_password(password_file)?;
    let pool = infra::db::connect(&common.database_url, 2)
        .await
        .context("connecting to the database")?;
    infra::db::migrate(&pool)
        .await
        .context("applying the migrations")?;
    let passwords = Passwords::new(0).await?;
    bootstrap(pool, email, display_name, password, passwords)
        .await
        .context("creating the administrator")
}

/// `api admin erase-user`: erases a person as `POST /v1/users/{id}/erase`
/// does, as an operator holding every permission; returns the position of
/// the last event written. Running it again completes an erasure a failure
/// cut short.
pub async fn erase_user(common: &CommonSettings, user_id: Uuid) -> anyhow::Result<i64> {
    let pool = infra::db::connect(&common.database_url, 2)
        .await
        .context("connecting to the database")?;
    infra::db::migrate(&pool)
        .await
        .context("applying the migrations")?;
    let failed_logins = FailedLogins::new(pool.clone(), AddressPolicy::DEFAULT);
    let users = UserCommands::new(pool, Passwords::new(0).await?, Arc::new(failed_logins));
    let context = RequestContext {
        correlation_id: Uuid::new_v4().to_string(),
        request_ip: None,
        user_agent: Some("api admin erase-user".into()),
    };
    users
        .erase(&context, &Actor::operator(), user_id)
        .await
        .with_context(|| format!("erasing user {user_id}"))
}

/// The password: the first line of the file, or of standard input.
fn read_password(file: Option<&Path>) -> anyhow::Result<Password> {
    let text = match file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line
        }
    };
    let line = text.lines().next().unwrap_or_default();
    Password::parse(line).context("password")
}

/// What `api admin service-account create` prints.
#[derive(Debug, serde::Serialize)]
pub struct ProvisionedAccount {
    pub service_account_id: Uuid,
    pub key_id: Uuid,
    pub key: String,
    pub scope: Vec<String>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// What a provisioning script asks for.
pub struct AccountRequest<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub roles: &'a [String],
    pub scope: &'a [String],
    pub expires_in_days: Option<i64>,
    pub max_lifetime_days: i64,
}

/// `api admin service-account create`: an account holding the roles named
/// and its first key, as an operator.
pub async fn create_service_account(
    common: &CommonSettings,
    request: AccountRequest<'_>,
) -> anyhow::Result<ProvisionedAccount> {
    let name = ServiceAccountName::parse(request.name).context("name")?;
    let description =
        ServiceAccountDescription::parse(request.description).context("description")?;
    let scope = (!request.scope.is_empty())
        .then(|| {
            request
                .scope
                .iter()
                .map(|name| Permission::parse(name).with_context(|| format!("scope {name:?}")))
                .collect::<anyhow::Result<BTreeSet<Permission>>>()
        })
        .transpose()?;
    let pool = infra::db::connect(&common.database_url, 2)
        .await
        .context("connecting to the database")?;
    infra::db::migrate(&pool)
        .await
        .context("applying the migrations")?;
    let claims = Claims::new(pool.clone());
    let mut role_ids = Vec::new();
    for role in request.roles {
        let key = RoleName::parse(role)
            .with_context(|| format!("role {role:?}"))?
            .uniqueness_key();
        let owner = claims.owner(ClaimScope::ROLE_NAME, &key).await?;
        role_ids.push(owner.with_context(|| format!("no role is named {role:?}"))?);
    }
    let policy = KeyPolicy {
        max_lifetime: chrono::Duration::days(request.max_lifetime_days),
    };
    let expires_at = request
        .expires_in_days
        .map(|days| chrono::Utc::now() + chrono::Duration::days(days));
    let accounts = ServiceAccountCommands::new(pool, policy);
    let context = RequestContext {
        correlation_id: Uuid::new_v4().to_string(),
        request_ip: None,
        user_agent: Some("api admin service-account create".into()),
    };
    let (service_account_id, _) = accounts
        .create(&context, None, name, description)
        .await
        .context("creating the service account")?;
    for role_id in role_ids {
        accounts
            .assign_role(&context, None, service_account_id, role_id)
            .await
            .with_context(|| format!("assigning role {role_id}"))?;
    }
    let key = KeyRequest {
        description: ServiceAccountDescription::parse("issued by api admin service-account create")
            .expect("the description is valid"),
        scope,
        expires_at,
    };
    let issued = accounts
        .issue_key(&context, None, service_account_id, key)
        .await
        .context("issuing the key")?;
    Ok(ProvisionedAccount {
        service_account_id,
        key_id: issued.key.key_id(),
        key: issued.key.expose().to_owned(),
        scope: issued.scope.iter().map(|p| p.as_str().to_owned()).collect(),
        expires_at: issued.expires_at,
    })
}
