use relay::settings::Cli;
use relay::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = infra::settings::parse_cli();
    infra::telemetry::init(cli.settings.common.log_format);
    let application = Application::build(cli.settings).await?;
    tracing::info!(port = application.port(), "relay health listening");
    application.run_until_stopped().await?;
    Ok(())
}
