use clap::{Args, Parser, Subcommand};
use infra::settings::CommonSettings;

/// Builds the read models from the broker; rebuilds them from the event store.
#[derive(Parser, Debug)]
#[command(name = "projector", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub settings: ProjectorSettings,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Consume `projector.read_models` and keep the read models current (the default).
    Run,
    /// Rebuild a read model from the event store, swap it in, then keep consuming.
    Rebuild {
        /// The read model to rebuild: users_view (with user_roles_view), roles_view,
        /// sessions_view or audit_log; all of them when left out.
        read_model: Option<String>,
        /// Exit after the swap instead of consuming from the broker.
        #[arg(long)]
        exit: bool,
    },
    /// List, replay or purge the dead letters of this process's queues.
    DeadLetters(infra::dead_letters::DeadLetters),
}

#[derive(Args, Clone, Debug)]
pub struct ProjectorSettings {
    #[command(flatten)]
    pub common: CommonSettings,

    /// Address of the health endpoints (port 0 picks a free port).
    #[arg(long, env = "PROJECTOR_ADDR", default_value = "127.0.0.1:8081")]
    pub projector_addr: String,

    /// Deliveries of one message before it goes to the dead-letter queue.
    #[arg(long, env = "PROJECTOR_DELIVERY_LIMIT", default_value_t = 10)]
    pub delivery_limit: u32,

    /// Unacknowledged messages the broker may send ahead.
    #[arg(long, env = "PROJECTOR_PREFETCH", default_value_t = 256)]
    pub prefetch: u16,

    /// Most events applied in one transaction.
    #[arg(long, env = "PROJECTOR_MAX_BATCH", default_value_t = 128)]
    pub max_batch: usize,

    /// First retry delay of a failed event, in milliseconds; doubles per try.
    #[arg(long, env = "PROJECTOR_RETRY_BASE_MS", default_value_t = 100)]
    pub retry_base_ms: u64,
}

/// The projector's queue (before `AMQP_QUEUE_PREFIX`).
pub const CONSUMER_GROUP: &str = "projector.read_models";

/// The projector's consumer group: its queue bound to every event type a
/// view reads.
pub fn consumer_group(delivery_limit: u32) -> bus::ConsumerGroup {
    bus::ConsumerGroup {
        name: CONSUMER_GROUP.into(),
        binding_keys: binding_keys(),
        delivery_limit,
    }
}

impl ProjectorSettings {
    pub fn consumer_group(&self) -> bus::ConsumerGroup {
        consumer_group(self.delivery_limit)
    }

    pub fn consumption(&self) -> infra::consuming::Consumption {
        infra::consuming::Consumption::new(
            &self.common,
            self.consumer_group(),
            "projector",
            self.prefetch,
            self.max_batch,
            self.retry_base_ms,
        )
    }
}

/// The routing key of every event type: each feeds the audit log, and
/// those of an aggregate with a view (not `webhook`) feed that view too.
fn binding_keys() -> Vec<String> {
    domain::all_event_types()
        .map(|event_type| event_type.routing_key().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bound_to_every_event_type_of_the_contract_once() {
        let mut bound = binding_keys();
        bound.sort();
        let mut all: Vec<String> = domain::all_event_types()
            .map(|event_type| event_type.routing_key().to_owned())
            .collect();
        all.sort();
        assert_eq!(bound, all);
    }
}
