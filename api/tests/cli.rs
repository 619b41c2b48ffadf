//! The `api` binary's own commands.

mod support;

use std::process::Command;

use sqlx::migrate::MigrateDatabase;
use sqlx::{Connection, PgConnection, Postgres};

#[tokio::test]
async fn migrate_creates_the_database_and_applies_every_migration() {
    let server = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| infra::testing::POSTGRES_URL.to_string());
    let url = format!("{server}/identity_test_{}", uuid::Uuid::new_v4().simple());
    let status = Command::new(env!("CARGO_BIN_EXE_api"))
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("LOG_FORMAT", "json")
        .status()
        .expect("run api migrate");
    assert!(status.success());

    let mut connection = PgConnection::connect(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(applied as usize, infra::db::MIGRATOR.iter().count());
    connection.close().await.unwrap();

    // A second run finds nothing to do.
    let again = Command::new(env!("CARGO_BIN_EXE_api"))
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .status()
        .unwrap();
    assert!(again.success());
    Postgres::force_drop_database(&url).await.unwrap();
}

#[test]
fn help_names_the_environment_variable_of_every_option() {
    let output = Command::new(env!("CARGO_BIN_EXE_api"))
        .arg("--help")
        .env("AMQP_URL", "amqp://user:s3cret-amqp@broker:5672/%2f")
        .env("DATABASE_URL", "postgres://user:s3cret-db@db/identity")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for variable in [
        "DATABASE_URL",
        "AMQP_URL",
        "AMQP_EXCHANGE",
        "AMQP_QUEUE_PREFIX",
        "API_ADDR",
        "LOG_FORMAT",
        "MIGRATE_ON_START",
        "READ_YOUR_WRITES_TIMEOUT_MS",
        "RELAY_POLL_INTERVAL_MS",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "{variable} missing"
        );
    }
    assert!(
        !help.contains("s3cret"),
        "a URL from the environment is shown"
    );
}

/// SIGTERM stops taking requests, stops the relay and exits cleanly.
#[tokio::test]
async fn sigterm_stops_the_api_cleanly() {
    let db = infra::testing::TestDatabase::create().await;
    let topology = infra::testing::TestTopology::new(vec![support::projector_group()]);
    let mut api = support::start_api(&db, &topology).await;
    let terminated = Command::new("kill")
        .args(["-TERM", &api.child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Some(status) = api.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "api still running");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
}
