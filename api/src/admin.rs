//! `api admin ...`: operator tasks run from the command line.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use app::bootstrap::{bootstrap, Bootstrapped};
use app::failed_logins::{AddressPolicy, FailedLogins};
use app::password::Passwords;
use app::power::Actor;
use app::users::UserCommands;
use app::RequestContext;
use domain::{DisplayName, Email, Password};
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
