use std::time::Duration;

use clap::{Args, Parser};
use infra::settings::CommonSettings;

/// How the relay publishes, in the units the code uses.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    pub batch_size: i64,
    /// Fallback when a notification is missed; publishing never waits for it.
    pub poll_interval: Duration,
}

/// The relay's options, shared by the `relay` and `api` binaries.
#[derive(Args, Clone, Debug)]
pub struct RelayArgs {
    /// Events published per batch (one round of publisher confirms).
    #[arg(long, env = "RELAY_BATCH_SIZE", default_value_t = 500)]
    pub relay_batch_size: i64,

    /// Fallback poll of the event table when no notification arrives, in milliseconds.
    #[arg(long, env = "RELAY_POLL_INTERVAL_MS", default_value_t = 1000)]
    pub relay_poll_interval_ms: u64,
}

impl RelayArgs {
    pub fn settings(&self) -> RelaySettings {
        RelaySettings {
            batch_size: self.relay_batch_size.max(1),
            poll_interval: Duration::from_millis(self.relay_poll_interval_ms.max(10)),
        }
    }
}

/// Publishes the event log to RabbitMQ on its own, for operators who run
/// the relay apart from the api (start the api with `RELAY_ENABLED=false`).
/// Any number may run: one is elected, the others wait to take over.
#[derive(Parser, Debug)]
#[command(name = "relay", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub settings: StandaloneSettings,
}

#[derive(Args, Clone, Debug)]
pub struct StandaloneSettings {
    #[command(flatten)]
    pub common: CommonSettings,

    #[command(flatten)]
    pub relay: RelayArgs,

    /// Address of the health and metrics endpoints (port 0 picks a free port).
    #[arg(long, env = "RELAY_ADDR", default_value = "127.0.0.1:8083")]
    pub relay_addr: String,
}
