use clap::Parser;
use worker::settings::{Cli, Command, WorkerSettings};
use worker::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    infra::telemetry::init(cli.settings.common.log_format);
    if let Some(Command::DeadLetters { replay, max }) = cli.command {
        return dead_letters(&cli.settings, replay, max).await;
    }
    let application = Application::build(cli.settings).await?;
    tracing::info!(port = application.port(), "worker running");
    application.run_until_stopped().await?;
    Ok(())
}

async fn dead_letters(settings: &WorkerSettings, replay: bool, max: usize) -> anyhow::Result<()> {
    let connection = infra::broker::connect(&settings.common.amqp_url).await?;
    let topology = settings.common.topology();
    let group = settings.consumer_group();
    let channel = connection.create_channel().await?;
    topology.declare_exchange(&channel).await?;
    topology.declare_group(&channel, &group).await?;
    let waiting = bus::count_dead_letters(&connection, &topology, &group).await?;
    println!(
        "{waiting} dead letters in {}",
        topology.dead_letter_queue_name(&group)
    );
    if replay {
        let moved = bus::replay_dead_letters(&connection, &topology, &group, max).await?;
        println!("{moved} moved back to {}", topology.queue_name(&group));
    }
    Ok(())
}
