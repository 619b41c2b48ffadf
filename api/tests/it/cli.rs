//! The `api` binary's own commands.

use crate::support;
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

/// An attacker (or a typo) pointing `DATABASE_URL` at a database that does
/// not exist gets a refusal naming it, and no database is created: only
/// `api migrate` and a start-up migration create one.
#[tokio::test]
async fn audit_export_never_creates_a_missing_database() {
    let server = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| infra::testing::POSTGRES_URL.to_string());
    let name = format!("identity_test_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{server}/{name}");
    let file = std::env::temp_dir().join(format!("{name}.ndjson"));
    let output = Command::new(env!("CARGO_BIN_EXE_api"))
        .args(["audit", "export", "--output"])
        .arg(&file)
        .env("DATABASE_URL", &url)
        .env("LOG_FORMAT", "json")
        .output()
        .expect("run api audit export");
    let exists = Postgres::database_exists(&url).await.unwrap();
    if exists {
        Postgres::force_drop_database(&url).await.unwrap();
    }
    assert!(!exists, "api audit export created database {name}");
    assert!(!file.exists());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("database \"{name}\" does not exist")),
        "the error does not name the database: {stderr}"
    );
    let mut connection = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    let listed: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    assert_eq!(listed, 0);
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
        "STRICT_TRANSPORT_SECURITY",
        "CORS_ALLOWED_ORIGINS",
        "TRUSTED_PROXIES",
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

/// Runs `api admin bootstrap --email <email>` on the database, the
/// password on standard input or in `--password-file`.
fn bootstrap(db: &infra::testing::TestDatabase, email: &str, password: Password<'_>) {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_api"));
    command
        .args(["admin", "bootstrap", "--email", email])
        .env("DATABASE_URL", &db.url)
        .env("LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let file = match password {
        Password::Stdin(_) => None,
        Password::File(password) => {
            let path = std::env::temp_dir().join(format!("{}-admin-password", db.name));
            std::fs::write(&path, format!("{password}\n")).unwrap();
            command.arg("--password-file").arg(&path);
            Some(path)
        }
    };
    command.stdin(std::process::Stdio::piped());
    let mut child = command.spawn().expect("run api admin bootstrap");
    let mut stdin = child.stdin.take().unwrap();
    if let Password::Stdin(password) = password {
        writeln!(stdin, "{password}").unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    if let Some(path) = file {
        let _ = std::fs::remove_file(path);
    }
    assert!(
        output.status.success(),
        "bootstrap failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

enum Password<'a> {
    Stdin(&'a str),
    File(&'a str),
}

async fn count(db: &infra::testing::TestDatabase, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

/// Three runs (the password from a file, then twice on standard input, the
/// last with another password) leave one administrator, one `admin` role
/// and one assignment; the first password still logs in and grants every
/// permission.
#[tokio::test]
async fn admin_bootstrap_twice_leaves_one_admin() {
    let db = infra::testing::TestDatabase::create().await;
    let topology = infra::testing::TestTopology::new(vec![support::projector_group()]);
    let email = "root@example.com";
    let password = "the very first admin password";
    let other = "an entirely different password";

    bootstrap(&db, email, Password::File(password));
    let after_first = count(&db, "SELECT count(*) FROM events").await;
    bootstrap(&db, email, Password::Stdin(password));
    bootstrap(&db, email, Password::Stdin(other));
    assert_eq!(
        count(&db, "SELECT count(*) FROM events").await,
        after_first,
        "a later run wrote events"
    );

    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM events WHERE event_type = '{}'",
                domain::UserEvent::REGISTERED.name()
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM events WHERE event_type = '{}'",
                domain::RoleEvent::CREATED.name()
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM events WHERE event_type = '{}'",
                domain::UserEvent::ROLE_ASSIGNED.name()
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM events WHERE event_type = '{}'",
                domain::UserEvent::PASSWORD_CHANGED
            )
        )
        .await,
        0,
        "a second run changed the password"
    );
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM unique_claims WHERE scope = '{}' AND value = 'admin' AND confirmed", domain::ClaimScope::ROLE_NAME.as_str())
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM unique_claims WHERE scope = '{}'",
                domain::ClaimScope::USER_EMAIL.as_str()
            )
        )
        .await,
        1
    );

    // The api (sign-up closed) and the projector on that database.
    let settings = support::api_settings(&db, &topology, &[]);
    support::spawn_projector(&settings.common).await;
    let application = api::startup::Application::build(settings).await.unwrap();
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::new();

    let refused = client
        .post(format!("{address}/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": other}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "a later run replaced the password");

    let token = support::login_with_permissions(&client, &address, email, password).await;
    let me: serde_json::Value = client
        .get(format!("{address}/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let permissions = support::sorted_strings(&me["permissions"]);
    let mut every: Vec<&str> = domain::Permission::ALL.iter().map(|p| p.as_str()).collect();
    every.sort_unstable();
    assert_eq!(permissions, every, "the admin role holds every permission");
    assert_eq!(me["email"], email);
    assert_eq!(me["roles"], serde_json::json!(["admin"]));
}
