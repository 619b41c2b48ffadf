use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::{MigrateDatabase, MigrateError, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Opens a pool, creating the database first if it does not exist.
pub async fn connect(url: &SecretString, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let url = url.expose_secret();
    if !Postgres::database_exists(url).await? {
        // Two processes may race to create it; the loser sees it exists.
        if let Err(error) = Postgres::create_database(url).await {
            if !Postgres::database_exists(url).await? {
                return Err(error);
            }
        }
    }
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}

/// The SQL migrations, then the data migrations SQL cannot do.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    MIGRATOR.run(pool).await?;
    crate::email_keys::migrate(pool)
        .await
        .map_err(MigrateError::Execute)
}

/// The pool a process runs on, migrated first when its settings say so.
pub async fn open(common: &crate::settings::CommonSettings) -> anyhow::Result<PgPool> {
    let pool = connect(&common.database_url, common.database_max_connections).await?;
    if common.migrate_on_start {
        migrate(&pool).await?;
    }
    Ok(pool)
}
