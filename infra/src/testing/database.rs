//! A database of its own for each test.

use secrecy::SecretString;
use sqlx::migrate::MigrateDatabase;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";

fn server_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_URL.to_string())
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
        let pool = crate::db::connect(&SecretString::from(url.clone()), 5)
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
        super::block_on_own_runtime(async move {
            let _ = Postgres::force_drop_database(&url).await;
        });
    }
}

/// Connections to the current database waiting for a lock: a service a
/// test holds up with a row it has not committed.
pub async fn lock_waiters(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .expect("look for lock waiters")
}
