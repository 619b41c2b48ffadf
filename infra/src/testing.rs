//! Test support for the crates' integration tests (feature `testing`): a
//! fresh database built from the migrations and a broker topology with
//! unique names, both removed when dropped, even after a failed assertion.

use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn server_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_URL.to_string())
}

pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL").unwrap_or_else(|_| AMQP_URL.to_string())
}

/// A database of its own for one test, migrated, dropped on `Drop`.
pub struct TestDatabase {
    pub url: String,
    pub name: String,
    pub pool: PgPool,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let name = format!("identity_test_{}", Uuid::new_v4().simple());
        let url = format!("{}/{name}", server_url());
        Postgres::create_database(&url)
            .await
            .expect("create test database");
        let pool = crate::db::connect(&url, 5)
            .await
            .expect("connect test database");
        crate::db::migrate(&pool)
            .await
            .expect("migrate test database");
        Self { url, name, pool }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let url = self.url.clone();
        // The test's runtime is blocked in this drop, so the pool's
        // connections cannot be closed politely; FORCE ends them.
        block_on_own_runtime(async move {
            let _ = Postgres::force_drop_database(&url).await;
        });
    }
}

/// Exchange and queue names no other test uses; deleted on `Drop`.
pub struct TestTopology {
    pub topology: bus::Topology,
    pub groups: Vec<bus::ConsumerGroup>,
}

impl TestTopology {
    pub fn new(groups: Vec<bus::ConsumerGroup>) -> Self {
        let id = Uuid::new_v4().simple().to_string();
        Self {
            topology: bus::Topology {
                exchange: format!("test.{id}.events"),
                queue_prefix: format!("test.{id}."),
            },
            groups,
        }
    }
}

impl TestTopology {
    /// Connects, declares the exchange and `group`, and opens a publisher
    /// with confirms on the exchange: what a test that plays the relay needs.
    pub async fn declare_for_publishing(
        &self,
        group: &bus::ConsumerGroup,
    ) -> (lapin::Connection, lapin::Channel, bus::Publisher) {
        let conn = bus::connect(&amqp_url())
            .await
            .expect("connect to RabbitMQ");
        let channel = conn.create_channel().await.expect("channel");
        self.topology
            .declare_exchange(&channel)
            .await
            .expect("declare exchange");
        self.topology
            .declare_group(&channel, group)
            .await
            .expect("declare consumer group");
        let publisher = bus::Publisher::new(&conn, &self.topology.exchange)
            .await
            .expect("publisher");
        (conn, channel, publisher)
    }
}

impl Drop for TestTopology {
    fn drop(&mut self) {
        let topology = self.topology.clone();
        let groups = self.groups.clone();
        block_on_own_runtime(async move {
            let Ok(connection) = bus::connect(&amqp_url()).await else {
                return;
            };
            if let Ok(channel) = connection.create_channel().await {
                for group in &groups {
                    let _ = topology.delete_group(&channel, group).await;
                }
                let _ = topology.delete_exchange(&channel).await;
            }
            let _ = connection.close(200, "test done".into()).await;
        });
    }
}

/// Runs cleanup from `Drop`, which cannot await, on a runtime of its own.
fn block_on_own_runtime(cleanup: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| runtime.block_on(cleanup))
    })
    .join();
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A process's `Application` on a runtime of its own thread, so it runs in
/// parallel with the test and stops for good when dropped: dropping shuts
/// that runtime down, which ends its consumers and closes its broker
/// connection (unacked deliveries go back to the queue).
pub struct InProcess {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    /// `build` makes the application and returns its port and its run future.
    pub async fn start<F, Fut, Run>(name: &'static str, build: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<(u16, Run)>>,
        Run: std::future::Future<Output = std::io::Result<()>>,
    {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let (port, run) = match build().await {
                    Ok(built) => built,
                    Err(error) => {
                        let _ = started_tx.send(Err(error));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(port));
                tokio::select! {
                    result = run => result.unwrap_or_else(|error| panic!("{name} failed: {error}")),
                    _ = stop_rx => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(5));
        });
        let port = started_rx
            .await
            .unwrap_or_else(|_| panic!("{name} thread"))
            .unwrap_or_else(|error| panic!("build the {name}: {error}"));
        Self {
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The environment that configures `common` in a child process.
pub fn common_env(common: &crate::settings::CommonSettings) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", common.database_url.clone()),
        (
            "DATABASE_MAX_CONNECTIONS",
            common.database_max_connections.to_string(),
        ),
        ("AMQP_URL", common.amqp_url.clone()),
        ("AMQP_EXCHANGE", common.amqp_exchange.clone()),
        ("AMQP_QUEUE_PREFIX", common.amqp_queue_prefix.clone()),
        ("MIGRATE_ON_START", common.migrate_on_start.to_string()),
        ("LOG_FORMAT", "json".into()),
    ]
}

/// A binary in a child process with only the given environment (and
/// `RUST_LOG` if set); killed when dropped. Its output goes to `log`, which
/// is shown (and kept) when the test fails.
pub struct ChildProcess {
    name: &'static str,
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl ChildProcess {
    pub fn spawn(
        name: &'static str,
        binary: &str,
        env: &[(&'static str, String)],
        log: std::path::PathBuf,
    ) -> Self {
        use std::process::{Command, Stdio};
        let output = std::fs::File::create(&log).expect("create the process log");
        let mut command = Command::new(binary);
        command
            .env_clear()
            .envs(env.iter().map(|(key, value)| (*key, value)))
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("log file handle"))
            .stderr(output);
        if let Some(filter) = std::env::var_os("RUST_LOG") {
            command.env("RUST_LOG", filter);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("start {name}: {error}"));
        Self { name, child, log }
    }

    /// SIGKILL: no shutdown hook runs, the transaction in hand is cut off.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill the process");
        self.child.wait().expect("reap the process");
    }

    /// SIGTERM: the process finishes what it holds and must exit cleanly.
    pub fn terminate(&mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let exit = self.child.wait().expect("wait for the process");
        assert!(exit.success(), "{} exited with {exit}", self.name);
    }

    /// Whether it is still running (a service should not exit by itself).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("process status").is_none()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        } else {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            eprintln!("last lines of {}:\n{}", self.log.display(), tail.join("\n"));
        }
    }
}
