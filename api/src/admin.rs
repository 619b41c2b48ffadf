//! `api admin ...`: operator tasks run from the command line.

use std::path::Path;

use anyhow::Context;
use app::bootstrap::{bootstrap, Bootstrapped};
use app::password::Passwords;
use domain::{DisplayName, Email, Password};
use infra::settings::CommonSettings;

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
