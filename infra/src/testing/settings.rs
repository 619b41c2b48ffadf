//! A test's settings for the services, and how a child process gets them.

use secrecy::{ExposeSecret, SecretString};

use crate::settings::{CommonSettings, LogFormat};

use super::{amqp_url, TestDatabase};

/// Settings for a service on `db` and the test broker; the exchange and
/// the queue prefix are the test topology's (see [`super::TestBroker::declare`]).
pub fn common_settings(db: &TestDatabase, database_max_connections: u32) -> CommonSettings {
    CommonSettings {
        database_url: SecretString::from(db.url.clone()),
        database_max_connections,
        amqp_url: SecretString::from(amqp_url()),
        amqp_exchange: String::new(),
        amqp_queue_prefix: String::new(),
        log_format: LogFormat::Json,
        migrate_on_start: false,
    }
}

/// The environment that configures `common` in a child process.
pub fn common_env(common: &CommonSettings) -> Vec<(&'static str, String)> {
    vec![
        (
            "DATABASE_URL",
            common.database_url.expose_secret().to_owned(),
        ),
        (
            "DATABASE_MAX_CONNECTIONS",
            common.database_max_connections.to_string(),
        ),
        ("AMQP_URL", common.amqp_url.expose_secret().to_owned()),
        ("AMQP_EXCHANGE", common.amqp_exchange.clone()),
        ("AMQP_QUEUE_PREFIX", common.amqp_queue_prefix.clone()),
        ("MIGRATE_ON_START", common.migrate_on_start.to_string()),
        ("LOG_FORMAT", "json".into()),
    ]
}
