use std::time::Duration;

use clap::Args;
use infra::webhooks::DestinationPolicy;

use super::retry::RetryPolicy;

/// How the worker delivers webhooks.
#[derive(Args, Clone, Debug)]
pub struct WebhookSettings {
    #[command(flatten)]
    pub destinations: DestinationPolicy,

    /// Longest wait for a receiver's answer, in milliseconds; then the
    /// attempt failed.
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_timeout_ms: u64,

    /// Attempts of one delivery before it is dead.
    #[arg(long, env = "WEBHOOK_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub webhook_max_attempts: u32,

    /// Delay before the first retry, in milliseconds; doubles per failure
    /// (with jitter) up to an hour.
    #[arg(long, env = "WEBHOOK_RETRY_BASE_MS", default_value_t = 5_000)]
    pub webhook_retry_base_ms: u64,

    /// Deliveries in flight to one endpoint at a time (per worker process).
    #[arg(long, env = "WEBHOOK_MAX_IN_FLIGHT", default_value_t = 4, value_parser = clap::value_parser!(i64).range(1..=100))]
    pub webhook_max_in_flight: i64,

    /// Days a delivered or dead delivery (and its attempts) stays listed.
    #[arg(long, env = "WEBHOOK_DELIVERY_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub webhook_delivery_retention_days: u32,

    /// How often to look for due deliveries, in milliseconds.
    #[arg(long, env = "WEBHOOK_POLL_INTERVAL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_poll_interval_ms: u64,
}

impl WebhookSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.webhook_timeout_ms)
    }

    /// How long a claimed delivery stays claimed: long enough for one
    /// attempt and its record; a worker that dies leaves it due after that.
    pub fn lease(&self) -> Duration {
        self.timeout() * 2 + Duration::from_secs(1)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.webhook_poll_interval_ms)
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.webhook_delivery_retention_days) * 24 * 3600)
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.webhook_max_attempts,
            base: Duration::from_millis(self.webhook_retry_base_ms),
            max: Duration::from_secs(3600),
        }
    }
}
