use api::settings::{Cli, Command};
use api::startup::Application;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    infra::telemetry::init(cli.settings.common.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let common = &cli.settings.common;
            let pool = infra::db::connect(&common.database_url, 1).await?;
            infra::db::migrate(&pool).await?;
            tracing::info!("migrations applied");
        }
        Command::Serve => {
            let application = Application::build(cli.settings).await?;
            tracing::info!(port = application.port(), "api listening");
            application.run_until_stopped().await?;
        }
    }
    Ok(())
}
