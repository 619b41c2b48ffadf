use projector::settings::{Cli, Command};
use projector::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = infra::settings::parse_cli();
    infra::telemetry::init(cli.settings.common.log_format);
    if let Some(Command::DeadLetters(dead_letters)) = &cli.command {
        let group = cli.settings.consumer_group();
        return dead_letters.run(&cli.settings.common, &[group]).await;
    }
    let pool = infra::db::open(&cli.settings.common).await?;
    if let Some(Command::Rebuild { read_model, exit }) = cli.command {
        let rebuilt = projector::rebuild::rebuild(&pool, read_model.as_deref()).await?;
        tracing::info!(
            read_models = ?rebuilt.read_models,
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
