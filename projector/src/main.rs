use clap::Parser;
use projector::settings::{Cli, Command};
use projector::startup::{self, Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    infra::telemetry::init(cli.settings.common.log_format);
    let pool = startup::connect(&cli.settings).await?;
    if let Some(Command::Rebuild { view, exit }) = cli.command {
        let rebuilt = projector::rebuild::rebuild(&pool, view.as_deref()).await?;
        tracing::info!(
            view = rebuilt.view,
            events = rebuilt.events,
            up_to = rebuilt.up_to.global_position,
            "rebuilt"
        );
        if exit {
            return Ok(());
        }
    }
    let application = Application::build_with_pool(cli.settings, pool).await?;
    tracing::info!(port = application.port(), "projector running");
    application.run_until_stopped().await?;
    Ok(())
}
