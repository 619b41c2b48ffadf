//! `<process> dead-letters [--replay]`: what an operator runs to look at a
//! consumer group's dead letters and move them back once the cause is fixed.

use anyhow::Context;
use bus::ConsumerGroup;
use clap::Args;

use crate::settings::CommonSettings;

/// The options of a consumer's `dead-letters` subcommand.
#[derive(Args, Clone, Debug)]
pub struct DeadLetters {
    /// Move the dead letters back to the queue (after fixing what made them fail).
    #[arg(long)]
    pub replay: bool,
    /// Most messages moved by one replay.
    #[arg(long, default_value_t = 10_000)]
    pub max: usize,
}

impl DeadLetters {
    /// Prints how many dead letters `group` holds; with `--replay`, moves at
    /// most `--max` of them back to its queue and prints how many moved.
    pub async fn run(&self, common: &CommonSettings, group: &ConsumerGroup) -> anyhow::Result<()> {
        inspect(common, group, self.replay, self.max).await
    }
}

async fn inspect(
    common: &CommonSettings,
    group: &ConsumerGroup,
    replay: bool,
    max: usize,
) -> anyhow::Result<()> {
    let connection = crate::broker::connect(&common.amqp_url)
        .await
        .context("connecting to the broker")?;
    let topology = common.topology();
    let channel = connection
        .create_channel()
        .await
        .context("opening a channel")?;
    topology
        .declare_exchange(&channel)
        .await
        .context("declaring the exchange")?;
    topology
        .declare_group(&channel, group)
        .await
        .context("declaring the consumer group")?;
    let waiting = bus::count_dead_letters(&connection, &topology, group)
        .await
        .context("counting dead letters")?;
    println!(
        "{waiting} dead letters in {}",
        topology.dead_letter_queue_name(group)
    );
    if replay {
        let moved = bus::replay_dead_letters(&connection, &topology, group, max)
            .await
            .context("replaying dead letters")?;
        println!("{moved} moved back to {}", topology.queue_name(group));
    }
    Ok(())
}
