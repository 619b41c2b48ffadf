//! `spawn_app()`: the API and the projector on a fresh database, a unique
//! exchange and queue prefix, the API on a random port.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use api::settings::ApiSettings;
use clap::Parser;
use infra::testing::{amqp_url, eventually, TestDatabase, TestTopology};
use serde_json::{json, Value};

pub const GOOD_PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    // Dropped last: the database and the topology outlive the processes.
    pub db: TestDatabase,
    pub topology: TestTopology,
}

#[derive(clap::Parser)]
struct ApiArgs {
    #[command(flatten)]
    settings: ApiSettings,
}

/// Settings as the binary would parse them, with the test's names.
pub fn api_settings(db: &TestDatabase, topology: &TestTopology, extra: &[&str]) -> ApiSettings {
    let mut args = vec![
        "api".to_string(),
        format!("--database-url={}", db.url),
        format!("--amqp-url={}", amqp_url()),
        format!("--amqp-exchange={}", topology.topology.exchange),
        format!("--amqp-queue-prefix={}", topology.topology.queue_prefix),
        "--api-addr=127.0.0.1:0".into(),
        "--migrate-on-start=false".into(),
        "--relay-poll-interval-ms=200".into(),
        "--database-max-connections=5".into(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    ApiArgs::parse_from(args).settings
}

pub fn projector_group() -> bus::ConsumerGroup {
    bus::ConsumerGroup {
        name: "projector.read_models".into(),
        binding_keys: vec!["user.*".into()],
        delivery_limit: 10,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![projector_group()]);
    let settings = api_settings(&db, &topology, extra);
    spawn_projector(&settings.common).await;
    let application = api::startup::Application::build(settings)
        .await
        .expect("build api");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
        topology,
    }
}

pub async fn spawn_projector(common: &infra::settings::CommonSettings) {
    let settings = projector::settings::ProjectorSettings {
        common: common.clone(),
        projector_addr: "127.0.0.1:0".into(),
        delivery_limit: 10,
        prefetch: 256,
        max_batch: 128,
        retry_base_ms: 20,
    };
    let projector = projector::startup::Application::build(settings)
        .await
        .expect("build projector");
    tokio::spawn(projector.run_until_stopped());
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .patch(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_empty(&self, path: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Registers a user and returns `(id, position)`.
    pub async fn register(&self, email: &str, display_name: &str) -> (String, i64) {
        let response = self
            .post_json(
                "/v1/users",
                &json!({"email": email, "password": GOOD_PASSWORD, "display_name": display_name}),
            )
            .await;
        assert_eq!(response.status(), 201, "register {email}");
        let body: Value = response.json().await.expect("json");
        (
            body["id"].as_str().expect("id").to_string(),
            body["position"].as_i64().expect("position"),
        )
    }

    /// The user as the read model has it once it applied `position`.
    pub async fn user_at(&self, id: &str, position: i64) -> Value {
        let response = self
            .get(&format!("/v1/users/{id}?min_position={position}"))
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.db.pool)
            .await
            .expect("count events")
    }

    pub async fn claim_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM unique_claims")
            .fetch_one(&self.db.pool)
            .await
            .expect("count claims")
    }
}

/// Asserts an RFC 7807 problem with the given status, type suffix and, if
/// given, the field named in `errors`.
pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    kind: &str,
    field: Option<&str>,
) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem json");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{kind}")),
        "type of {body}"
    );
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["detail"].is_string());
    if let Some(field) = field {
        let named = body["errors"]
            .as_array()
            .map(|errors| errors.iter().any(|e| e["field"] == field))
            .unwrap_or(false);
        assert!(named, "field {field} not named in {body}");
    }
    body
}

pub const SHORT: Duration = Duration::from_secs(10);

/// A real `api` process, killed when dropped.
pub struct ApiProcess {
    pub child: Child,
    pub address: String,
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

/// Starts the `api` binary on the test's database and names, and waits
/// until it answers.
pub async fn start_api(db: &TestDatabase, topology: &TestTopology) -> ApiProcess {
    let address = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_api"))
        .env("DATABASE_URL", &db.url)
        .env("AMQP_URL", amqp_url())
        .env("AMQP_EXCHANGE", &topology.topology.exchange)
        .env("AMQP_QUEUE_PREFIX", &topology.topology.queue_prefix)
        .env("API_ADDR", &address)
        .env("MIGRATE_ON_START", "false")
        .env("RELAY_POLL_INTERVAL_MS", "200")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start api");
    let process = ApiProcess {
        child,
        address: format!("http://{address}"),
    };
    let url = format!("{}/health/ready", process.address);
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(20), "api ready", || async {
        client
            .get(&url)
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
    })
    .await;
    process
}
