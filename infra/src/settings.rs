use clap::{Args, ValueEnum};
use secrecy::SecretString;

/// Options every process of the service takes, each from an environment variable.
/// The URLs may carry passwords: they are secrets, which `Debug` redacts.
#[derive(Args, Clone, Debug)]
pub struct CommonSettings {
    /// PostgreSQL connection URL; the database is created if it does not exist.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/identity",
        hide_env_values = true,
        value_parser = secret
    )]
    pub database_url: SecretString,

    /// Maximum connections in this process's PostgreSQL pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,

    /// RabbitMQ connection URL.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true,
        value_parser = secret
    )]
    pub amqp_url: SecretString,

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

impl CommonSettings {
    pub fn topology(&self) -> bus::Topology {
        bus::Topology {
            exchange: self.amqp_exchange.clone(),
            queue_prefix: self.amqp_queue_prefix.clone(),
        }
    }
}

/// Parses a command-line value that must not show in `Debug` output.
/// Parses a binary's command line, its top-level settings accepted before
/// or after the subcommand (`api serve --api-addr …`), as an operator types
/// them: they are made global.
pub fn parse_cli<C: clap::Parser>() -> C {
    parse_cli_from(std::env::args_os()).unwrap_or_else(|error| error.exit())
}

/// [`parse_cli`] of the arguments given (the binary's name first).
pub fn parse_cli_from<C: clap::Parser>(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> Result<C, clap::Error> {
    let matches = C::command()
        .mut_args(|arg| arg.global(true))
        .try_get_matches_from(args)?;
    C::from_arg_matches(&matches)
}

pub fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonSettings,
    }

    #[test]
    fn debug_output_leaves_the_passwords_in_the_urls_out() {
        let cli = Cli::parse_from([
            "test",
            "--database-url=postgres://identity:db-password-1@db:5432/identity",
            "--amqp-url=amqp://identity:broker-password-2@broker:5672/%2f",
        ]);
        let debug = format!("{:?}", cli.common);
        assert!(!debug.contains("db-password-1"), "{debug}");
        assert!(!debug.contains("broker-password-2"), "{debug}");
        assert!(debug.contains("amqp_exchange"), "{debug}");
    }
}
