use api::settings::{AdminCommand, Cli, Command};
use api::startup::Application;
use clap::Parser;
use domain::{DisplayName, Email};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    infra::telemetry::init(cli.settings.common.log_format);
    let common = &cli.settings.common;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let pool = infra::db::connect(&common.database_url, 1).await?;
            infra::db::migrate(&pool).await?;
            tracing::info!("migrations applied");
        }
        Command::Admin {
            command:
                AdminCommand::Bootstrap {
                    email,
                    display_name,
                    password_file,
                },
        } => {
            let email = Email::parse(&email).map_err(|error| anyhow::anyhow!("email: {error}"))?;
            let display_name = DisplayName::parse(&display_name)
                .map_err(|error| anyhow::anyhow!("display name: {error}"))?;
            let password = api::bootstrap::read_password(password_file.as_deref())?;
            let pool = infra::db::connect(&common.database_url, 2).await?;
            infra::db::migrate(&pool).await?;
            let done = api::bootstrap::bootstrap(pool, email, display_name, password).await?;
            println!(
                "admin user {} ({}), role admin {} ({})",
                done.user_id,
                if done.created_user {
                    "created"
                } else {
                    "existed"
                },
                done.role_id,
                if done.created_role {
                    "created"
                } else {
                    "existed"
                },
            );
        }
        Command::Serve => {
            let application = Application::build(cli.settings).await?;
            tracing::info!(port = application.port(), "api listening");
            application.run_until_stopped().await?;
        }
    }
    Ok(())
}
