use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use infra::settings::CommonSettings;

use crate::relay::RelaySettings;

/// The identity service's HTTP API and outbox relay.
#[derive(Parser, Debug)]
#[command(name = "api", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub settings: ApiSettings,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API and run the outbox relay (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
}

#[derive(Args, Clone, Debug)]
pub struct ApiSettings {
    #[command(flatten)]
    pub common: CommonSettings,

    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "API_ADDR", default_value = "127.0.0.1:8080")]
    pub api_addr: String,

    /// How long a query with `min_position` waits for the read model, in milliseconds.
    #[arg(long, env = "READ_YOUR_WRITES_TIMEOUT_MS", default_value_t = 5000)]
    pub read_your_writes_timeout_ms: u64,

    /// Run the outbox relay in this process (one process at a time is elected).
    #[arg(long, env = "RELAY_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay_enabled: bool,

    /// Events published per batch (one round of publisher confirms).
    #[arg(long, env = "RELAY_BATCH_SIZE", default_value_t = 500)]
    pub relay_batch_size: i64,

    /// Fallback poll of the event table when no notification arrives, in milliseconds.
    #[arg(long, env = "RELAY_POLL_INTERVAL_MS", default_value_t = 1000)]
    pub relay_poll_interval_ms: u64,

    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "API_WORKERS")]
    pub workers: Option<usize>,
}

impl ApiSettings {
    pub fn relay(&self) -> RelaySettings {
        RelaySettings {
            batch_size: self.relay_batch_size.max(1),
            poll_interval: Duration::from_millis(self.relay_poll_interval_ms.max(10)),
        }
    }

    pub fn read_your_writes_timeout(&self) -> Duration {
        Duration::from_millis(self.read_your_writes_timeout_ms)
    }
}
