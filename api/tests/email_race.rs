//! Two `api` processes on one database: of 20 concurrent registrations of
//! one email, exactly one wins.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use infra::testing::{amqp_url, eventually, TestDatabase, TestTopology};
use serde_json::json;
use support::{projector_group, GOOD_PASSWORD};

struct ApiProcess {
    child: Child,
    address: String,
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free port")
}

fn start_api(db: &TestDatabase, topology: &TestTopology) -> ApiProcess {
    let address = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_api"))
        .env("DATABASE_URL", &db.url)
        .env("AMQP_URL", amqp_url())
        .env("AMQP_EXCHANGE", &topology.topology.exchange)
        .env("AMQP_QUEUE_PREFIX", &topology.topology.queue_prefix)
        .env("API_ADDR", &address)
        .env("MIGRATE_ON_START", "false")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start api");
    ApiProcess {
        child,
        address: format!("http://{address}"),
    }
}

#[tokio::test]
async fn twenty_concurrent_registrations_of_one_email_across_two_processes() {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![projector_group()]);
    let processes = [start_api(&db, &topology), start_api(&db, &topology)];
    let client = reqwest::Client::new();
    for process in &processes {
        let url = format!("{}/health/live", process.address);
        eventually(Duration::from_secs(20), "api started", || async {
            client
                .get(&url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        })
        .await;
    }

    let attempts = (0..20).map(|n| {
        let url = format!("{}/v1/users", processes[n % 2].address);
        // The same address, spelled differently: uniqueness ignores case.
        let email = if n % 3 == 0 { "Race@Example.com" } else { "race@example.com" };
        let body = json!({"email": email, "password": GOOD_PASSWORD, "display_name": format!("Racer {n}")});
        let client = client.clone();
        async move { client.post(url).json(&body).send().await.expect("request") }
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|response| response.status().as_u16())
        .collect();

    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    let registered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'user.registered'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(registered, 1);
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM unique_claims WHERE confirmed")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(claims, 1);
}
