use clap::{Args, ValueEnum};

/// Options every process of the service takes, each from an environment variable.
/// `Debug` leaves the URLs out: they may carry passwords.
#[derive(Args, Clone)]
pub struct CommonSettings {
    /// PostgreSQL connection URL; the database is created if it does not exist.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/identity",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Maximum connections in this process's PostgreSQL pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,

    /// RabbitMQ connection URL.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,

    /// Name of the durable topic exchange events are published to.
    #[arg(long, env = "AMQP_EXCHANGE", default_value = "identity.events")]
    pub amqp_exchange: String,

    /// Prefix for every queue name, so that deployments or tests can share one broker.
    #[arg(long, env = "AMQP_QUEUE_PREFIX", default_value = "")]
    pub amqp_queue_prefix: String,

    /// Log output: `json` for production, `pretty` for a terminal.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Apply the database migrations when the process starts.
    #[arg(long, env = "MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl std::fmt::Debug for CommonSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommonSettings")
            .field("database_url", &"[redacted]")
            .field("database_max_connections", &self.database_max_connections)
            .field("amqp_url", &"[redacted]")
            .field("amqp_exchange", &self.amqp_exchange)
            .field("amqp_queue_prefix", &self.amqp_queue_prefix)
            .field("log_format", &self.log_format)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

impl CommonSettings {
    pub fn topology(&self) -> bus::Topology {
        bus::Topology {
            exchange: self.amqp_exchange.clone(),
            queue_prefix: self.amqp_queue_prefix.clone(),
        }
    }
}
