use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use infra::settings::CommonSettings;

use crate::lockout;
pub use crate::lockout::LockoutPolicy;

/// Runs the side effects of events: locks users after repeated login
/// failures, expires sessions.
#[derive(Parser, Debug)]
#[command(name = "worker", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub settings: WorkerSettings,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Consume `worker.lockout` and run the session expiry loop (the default).
    Run,
    /// List, replay or purge the dead letters of `worker.lockout` and `worker.webhooks`.
    DeadLetters(infra::dead_letters::DeadLetters),
}

#[derive(Args, Clone, Debug)]
pub struct WorkerSettings {
    #[command(flatten)]
    pub common: CommonSettings,

    /// Address of the health endpoints (port 0 picks a free port).
    #[arg(long, env = "WORKER_ADDR", default_value = "127.0.0.1:8082")]
    pub worker_addr: String,

    /// Failed logins of one user within the window that lock the user.
    #[arg(long, env = "LOCKOUT_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub lockout_threshold: u32,

    /// Length of the window a user's failures are counted in, in seconds.
    #[arg(long, env = "LOCKOUT_WINDOW_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub lockout_window_seconds: u64,

    /// How long a lock lasts, in seconds, from the failure that triggered it.
    #[arg(long, env = "LOCKOUT_DURATION_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub lockout_duration_seconds: u64,

    /// How often to look for sessions past their deadline, in milliseconds.
    #[arg(long, env = "SESSION_EXPIRY_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_expiry_interval_ms: u64,

    /// Most sessions expired per scan.
    #[arg(long, env = "SESSION_EXPIRY_BATCH", default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..))]
    pub session_expiry_batch: i64,

    /// Deliveries of one message before it goes to the dead-letter queue.
    #[arg(long, env = "WORKER_DELIVERY_LIMIT", default_value_t = 10)]
    pub delivery_limit: u32,

    /// Unacknowledged messages the broker may send ahead.
    #[arg(long, env = "WORKER_PREFETCH", default_value_t = 128)]
    pub prefetch: u16,

    /// Most events handled in one transaction.
    #[arg(long, env = "WORKER_MAX_BATCH", default_value_t = 64)]
    pub max_batch: usize,

    /// First retry delay of a failed event, in milliseconds; doubles per try.
    #[arg(long, env = "WORKER_RETRY_BASE_MS", default_value_t = 100)]
    pub retry_base_ms: u64,

    #[command(flatten)]
    pub webhooks: crate::webhooks::WebhookSettings,
}

/// Longest duration taken from a setting: a century (`TimeDelta` has bounds).
const MAX_SECONDS: u64 = 100 * 366 * 24 * 3600;

fn seconds(value: u64) -> chrono::TimeDelta {
    chrono::TimeDelta::seconds(i64::try_from(value.min(MAX_SECONDS)).unwrap_or_default())
}

/// The lockout consumer's queue (before `AMQP_QUEUE_PREFIX`).
pub const CONSUMER_GROUP: &str = "worker.lockout";

/// The lockout consumer's group: its queue bound to the event types it handles.
pub fn consumer_group(delivery_limit: u32) -> bus::ConsumerGroup {
    bus::ConsumerGroup {
        name: CONSUMER_GROUP.into(),
        binding_keys: lockout::HANDLED
            .iter()
            .map(|event_type| event_type.routing_key().to_owned())
            .collect(),
        delivery_limit,
    }
}

/// The webhook consumer's queue (before `AMQP_QUEUE_PREFIX`).
pub const WEBHOOK_CONSUMER_GROUP: &str = "worker.webhooks";

/// The webhook consumer's group: bound to every event type (any may be
/// subscribed to).
pub fn webhook_consumer_group(delivery_limit: u32) -> bus::ConsumerGroup {
    bus::ConsumerGroup {
        name: WEBHOOK_CONSUMER_GROUP.into(),
        binding_keys: domain::all_event_types()
            .map(|event_type| event_type.routing_key().to_owned())
            .collect(),
        delivery_limit,
    }
}

impl WorkerSettings {
    pub fn consumer_group(&self) -> bus::ConsumerGroup {
        consumer_group(self.delivery_limit)
    }

    pub fn webhook_consumption(&self) -> infra::consuming::Consumption {
        infra::consuming::Consumption::new(
            &self.common,
            webhook_consumer_group(self.delivery_limit),
            "worker",
            self.prefetch,
            self.max_batch,
            self.retry_base_ms,
        )
    }

    pub fn consumption(&self) -> infra::consuming::Consumption {
        infra::consuming::Consumption::new(
            &self.common,
            self.consumer_group(),
            "worker",
            self.prefetch,
            self.max_batch,
            self.retry_base_ms,
        )
    }

    pub fn lockout_policy(&self) -> LockoutPolicy {
        LockoutPolicy {
            threshold: self.lockout_threshold,
            window: seconds(self.lockout_window_seconds),
            duration: seconds(self.lockout_duration_seconds),
        }
    }

    pub fn session_expiry_interval(&self) -> Duration {
        Duration::from_millis(self.session_expiry_interval_ms.max(1))
    }
}
