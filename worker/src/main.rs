use worker::settings::{Cli, Command};
use worker::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = infra::settings::parse_cli();
    infra::telemetry::init(cli.settings.common.log_format);
    if let Some(Command::DeadLetters(dead_letters)) = &cli.command {
        let groups = [
            cli.settings.consumer_group(),
            cli.settings.webhook_consumption().group,
        ];
        return dead_letters.run(&cli.settings.common, &groups).await;
    }
    let application = Application::build(cli.settings).await?;
    tracing::info!(port = application.port(), "worker running");
    application.run_until_stopped().await?;
    Ok(())
}
