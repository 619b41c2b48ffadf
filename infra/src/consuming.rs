//! The loop every consuming process (projector, worker) runs: declare its
//! consumer group, consume with its handler until shutdown, and reconnect
//! after any failure.

use std::sync::Arc;
use std::time::Duration;

use bus::{BatchHandler, ConsumerGroup, ConsumerOptions, Topology};

use crate::broker::BrokerLink;
use crate::settings::CommonSettings;
use crate::shutdown::Shutdown;

/// What to consume, and how.
#[derive(Clone, Debug)]
pub struct Consumption {
    pub topology: Topology,
    pub group: ConsumerGroup,
    pub options: ConsumerOptions,
}

impl Consumption {
    /// `group` consumed on the events exchange of `common` by `process`
    /// (its consumer tag): `prefetch` deliveries ahead, at most `max_batch`
    /// per batch, a failed event retried after `retry_base_ms`, doubling up
    /// to 10 s.
    pub fn new(
        common: &CommonSettings,
        group: ConsumerGroup,
        process: &str,
        prefetch: u16,
        max_batch: usize,
        retry_base_ms: u64,
    ) -> Self {
        Self {
            topology: common.topology(),
            group,
            options: ConsumerOptions {
                prefetch,
                max_batch: max_batch.max(1),
                backoff_base: Duration::from_millis(retry_base_ms),
                backoff_max: Duration::from_secs(10),
                consumer_tag: format!("{process}-{}", std::process::id()),
            },
        }
    }
}

/// Consumes until shutdown, reconnecting a second after any failure, and
/// meanwhile samples the queue's depths (`crate::queue_depth`).
pub async fn consume_until_shutdown<H: BatchHandler>(
    handler: H,
    broker: Arc<BrokerLink>,
    consumption: Consumption,
    shutdown: Shutdown,
) {
    bus::metrics::register(&consumption.topology.queue_name(&consumption.group));
    tokio::join!(
        consume_and_reconnect(&handler, &broker, &consumption, &shutdown),
        crate::queue_depth::sample_until_shutdown(&broker, &consumption, &shutdown),
    );
}

async fn consume_and_reconnect<H: BatchHandler>(
    handler: &H,
    broker: &BrokerLink,
    consumption: &Consumption,
    shutdown: &Shutdown,
) {
    while !shutdown.is_triggered() {
        if let Err(error) = consume_once(handler, broker, consumption, shutdown).await {
            tracing::error!(%error, "consumer stopped; reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait() => {}
            }
        }
    }
}

async fn consume_once<H: BatchHandler>(
    handler: &H,
    broker: &BrokerLink,
    consumption: &Consumption,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let Consumption {
        topology,
        group,
        options,
    } = consumption;
    let connection = broker.connection().await?;
    let channel = connection.create_channel().await?;
    topology.declare_exchange(&channel).await?;
    topology.declare_group(&channel, group).await?;
    channel.close(200, "declared".into()).await?;
    let queue = topology.queue_name(group);
    tracing::info!(%queue, "consuming");
    bus::run_consumer(&connection, &queue, handler, options, shutdown.subscribe()).await?;
    Ok(())
}
