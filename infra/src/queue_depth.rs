//! Samples a consumer group's backlog and dead-letter depth into
//! `bus::metrics` gauges while the process consumes it, so an operator can
//! alert on a growing backlog or on any dead letter.

use std::time::Duration;

use crate::broker::BrokerLink;
use crate::consuming::Consumption;
use crate::shutdown::Shutdown;

/// How often the depths are read (and once at start).
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples until shutdown. A failed sample (broker away) is skipped: the
/// gauges keep their last value and the broker's absence shows in readiness.
pub async fn sample_until_shutdown(
    broker: &BrokerLink,
    consumption: &Consumption,
    shutdown: &Shutdown,
) {
    let queue = consumption.topology.queue_name(&consumption.group);
    let dead = consumption
        .topology
        .dead_letter_queue_name(&consumption.group);
    while !shutdown.is_triggered() {
        if let Err(error) = sample(broker, &queue, &dead).await {
            tracing::debug!(%error, %queue, "queue depth not sampled");
        }
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_INTERVAL) => {}
            _ = shutdown.wait() => {}
        }
    }
}

async fn sample(broker: &BrokerLink, queue: &str, dead: &str) -> Result<(), bus::BusError> {
    let connection = broker.connection().await?;
    let ready = bus::ready_messages(&connection, queue).await?;
    let dead = bus::ready_messages(&connection, dead).await?;
    bus::metrics::record_depths(queue, ready, dead);
    Ok(())
}
