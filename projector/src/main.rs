use clap::Parser;
use projector::settings::{Cli, Command, ProjectorSettings};
use projector::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    infra::telemetry::init(cli.settings.common.log_format);
    if let Some(Command::DeadLetters { replay, max }) = cli.command {
        return dead_letters(&cli.settings, replay, max).await;
    }
    let pool = infra::db::open(&cli.settings.common).await?;
    if let Some(Command::Rebuild { view, exit }) = cli.command {
        let rebuilt = projector::rebuild::rebuild(&pool, view.as_deref()).await?;
        tracing::info!(
            views = ?rebuilt.views,
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

async fn dead_letters(
    settings: &ProjectorSettings,
    replay: bool,
    max: usize,
) -> anyhow::Result<()> {
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
