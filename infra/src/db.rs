use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::{MigrateDatabase, MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// SQLSTATE `invalid_catalog_name`: the database named does not exist.
const DATABASE_MISSING: &str = "3D000";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Only `api migrate` and a migration at start-up create a database.
    #[error(
        "database \"{database}\" does not exist; only `api migrate` (or a start with \
         MIGRATE_ON_START=true) creates it"
    )]
    Missing { database: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Opens a pool on a database that exists; never creates one.
pub async fn connect(url: &SecretString, max_connections: u32) -> Result<PgPool, ConnectError> {
    let url = url.expose_secret();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.code().as_deref() == Some(DATABASE_MISSING) => {
                ConnectError::Missing {
                    database: database_name(url),
                }
            }
            _ => ConnectError::Database(error),
        })
}

/// The database a URL names, for an error message (never the URL itself,
/// which may hold a password).
fn database_name(url: &str) -> String {
    PgConnectOptions::from_str(url)
        .ok()
        .and_then(|options| options.get_database().map(str::to_owned))
        .unwrap_or_default()
}

/// Opens a pool, creating the database first if it does not exist: for
/// `api migrate` and a migration at start-up only.
pub async fn create_and_connect(
    url: &SecretString,
    max_connections: u32,
) -> Result<PgPool, ConnectError> {
    let raw = url.expose_secret();
    if !Postgres::database_exists(raw).await? {
        // Two processes may race to create it; the loser sees it exists.
        if let Err(error) = Postgres::create_database(raw).await {
            if !Postgres::database_exists(raw).await? {
                return Err(error.into());
            }
        }
    }
    connect(url, max_connections).await
}

/// The SQL migrations, then the data migrations SQL cannot do.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    MIGRATOR.run(pool).await?;
    crate::email_keys::migrate(pool)
        .await
        .map_err(MigrateError::Execute)
}

/// The pool a process runs on, migrated first when its settings say so;
/// only then is a missing database created.
pub async fn open(common: &crate::settings::CommonSettings) -> anyhow::Result<PgPool> {
    if common.migrate_on_start {
        let pool =
            create_and_connect(&common.database_url, common.database_max_connections).await?;
        migrate(&pool).await?;
        Ok(pool)
    } else {
        Ok(connect(&common.database_url, common.database_max_connections).await?)
    }
}
