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
