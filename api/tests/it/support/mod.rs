//! `spawn_app()`: the API and the projector on a fresh database, a unique
//! exchange and queue prefix, the API on a random port.

pub mod user_events_webhook;

use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use api::settings::ApiSettings;
use clap::Parser;
use infra::testing::{amqp_url, eventually, TestDatabase, TestTopology};
use serde_json::{json, Value};

pub const GOOD_PASSWORD: &str = "correct horse battery staple";
pub const ADMIN_EMAIL: &str = "admin@example.com";
/// A rate or burst that is no limit: COMMAND_RATE_PER_SECOND and
/// COMMAND_RATE_BURST of a test's api unless it sets them (most tests send
/// commands as fast as they can), and AUTH_RATE_* of a test whose load is
/// sign-ups from its one address.
pub const UNLIMITED: &str = "1000000";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// An access token of the bootstrapped administrator (every permission);
    /// the request helpers send it unless told otherwise.
    pub admin_token: String,
    pub admin_id: String,
    /// Events and claims written by the bootstrap and the admin's login.
    pub baseline_events: i64,
    pub baseline_claims: i64,
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
        "--audit-verify-interval-ms=100".into(),
        "--database-max-connections=5".into(),
        format!("--jwt-signing-key-file={}", key_file(db)),
        format!("--second-factor-key-file={}", second_factor_key_file(db)),
        format!("--audit-signing-key-file={}", audit_key_file(db)),
        format!("--command-rate-per-second={UNLIMITED}"),
        format!("--command-rate-burst={UNLIMITED}"),
    ];
    // A test's own value of a flag replaces the default above.
    let flag = |arg: &str| arg.split('=').next().unwrap_or(arg).to_owned();
    args.retain(|arg| !extra.iter().any(|given| flag(given) == flag(arg)) || arg == "api");
    args.extend(extra.iter().map(|arg| arg.to_string()));
    ApiArgs::parse_from(args).settings
}

/// The repository's root.
pub fn repository() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python of the outside clients (target/oauth-client-venv, which
/// scripts/test makes; `OAUTH_CLIENT_PYTHON` overrides) if it can
/// `import {modules}`. Missing: the test is skipped, except in CI, where it
/// fails.
pub fn outside_python(modules: &str) -> Option<std::path::PathBuf> {
    let candidates = [
        std::env::var_os("OAUTH_CLIENT_PYTHON").map(std::path::PathBuf::from),
        Some(repository().join("target/oauth-client-venv/bin/python3")),
    ];
    let found = candidates.into_iter().flatten().find(|python| {
        std::process::Command::new(python)
            .args(["-c", &format!("import {modules}")])
            .output()
            .is_ok_and(|output| output.status.success())
    });
    if found.is_none() {
        let in_ci = std::env::var("CI").is_ok_and(|ci| ci == "true");
        assert!(
            !in_ci,
            "no Python with {modules} in CI (scripts/test makes target/oauth-client-venv)"
        );
        eprintln!(
            "\n*** SKIPPED: no Python with {modules}; `bash scripts/test` makes \
             target/oauth-client-venv ***\n"
        );
    }
    found
}

/// The test's second-factor key, generated on first use, one per database.
pub fn second_factor_key_file(db: &TestDatabase) -> String {
    std::env::temp_dir()
        .join(format!("{}-second-factor.key", db.name))
        .to_string_lossy()
        .into_owned()
}

/// The test's JWT signing key, generated on first use, one per database.
pub fn key_file(db: &TestDatabase) -> String {
    std::env::temp_dir()
        .join(format!("{}-keys", db.name))
        .join("jwt.pem")
        .display()
        .to_string()
}

/// The test's audit checkpoint signing key, beside its JWT key.
pub fn audit_key_file(db: &TestDatabase) -> String {
    std::env::temp_dir()
        .join(format!("{}-keys", db.name))
        .join("audit.pem")
        .display()
        .to_string()
}

pub fn projector_group() -> bus::ConsumerGroup {
    projector::settings::consumer_group(10)
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
    TestApp::with_admin(address, db, topology).await
}

/// The api alone, with no projector: nothing it answers may depend on the
/// read models. The administrator is logged in without waiting for them.
pub async fn spawn_app_without_projector() -> TestApp {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![projector_group()]);
    let settings = api_settings(&db, &topology, &[]);
    let application = api::startup::Application::build(settings)
        .await
        .expect("build api");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let admin_id = bootstrap_admin(&db).await;
    let client = test_client();
    let admin_token = login(&client, &address, ADMIN_EMAIL, GOOD_PASSWORD).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    TestApp::new(address, client, admin_token, admin_id, db, topology).await
}

/// `api admin bootstrap` as a function: the admin role and user.
pub async fn bootstrap_admin(db: &TestDatabase) -> String {
    let done = app::bootstrap::bootstrap(
        db.pool.clone(),
        domain::Email::parse(ADMIN_EMAIL).unwrap(),
        domain::DisplayName::parse("Admin").unwrap(),
        domain::Password::parse(GOOD_PASSWORD).unwrap(),
        app::password::Passwords::new(0).await.unwrap(),
    )
    .await
    .expect("bootstrap admin");
    done.user_id.to_string()
}

/// Logs in and returns the body (tokens); panics unless 200.
pub async fn login(client: &reqwest::Client, address: &str, email: &str, password: &str) -> Value {
    let response = client
        .post(format!("{address}/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login request");
    assert_eq!(response.status(), 200, "login {email}");
    response.json().await.expect("tokens")
}

/// A login from the test's address, whatever it answers.
pub async fn login_attempt(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.request(reqwest::Method::POST, "/v1/auth/login", None)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login request")
}

/// Waits until the api has blocked an address (the test's).
pub async fn address_blocked(app: &TestApp) {
    eventually(SHORT, "address blocked", || async {
        let blocked: Option<String> =
            sqlx::query_scalar("SELECT ip FROM login_ip_blocks WHERE blocked_until > now()")
                .fetch_optional(&app.db.pool)
                .await
                .unwrap();
        blocked
    })
    .await;
}

/// Logs in once the read models grant the user some permission (the role
/// events have been projected), and returns the access token.
pub async fn login_with_permissions(
    client: &reqwest::Client,
    address: &str,
    email: &str,
    password: &str,
) -> String {
    let token = login(client, address, email, password).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    // Setup, not a claim about speed: a loaded machine may take a while.
    eventually(infra::testing::TIMEOUT, "permissions projected", || async {
        let me: Value = client
            .get(format!("{address}/v1/users/me"))
            .bearer_auth(&token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        me["permissions"]
            .as_array()
            .filter(|permissions| !permissions.is_empty())
            .map(|_| ())
    })
    .await;
    token
}

/// Runs the projector in this process. Its queue is declared before this
/// returns, so no event published from now on passes it by.
pub async fn spawn_projector(common: &infra::settings::CommonSettings) {
    let settings = projector::settings::ProjectorSettings {
        common: common.clone(),
        projector_addr: "127.0.0.1:0".into(),
        delivery_limit: 10,
        prefetch: 256,
        max_batch: 128,
        retry_base_ms: 20,
    };
    declare_group(common, &settings.consumer_group()).await;
    let projector = projector::startup::Application::build(settings)
        .await
        .expect("build projector");
    tokio::spawn(projector.run_until_stopped());
}

/// Idle connections are dropped before the server's 5 s keep-alive would
/// close them, so no request races a closing connection.
fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

impl TestApp {
    /// Bootstraps the administrator, logs them in once their permissions
    /// are projected, and counts what that wrote as the baseline.
    async fn with_admin(address: String, db: TestDatabase, topology: TestTopology) -> Self {
        let client = test_client();
        let admin_id = bootstrap_admin(&db).await;
        let admin_token =
            login_with_permissions(&client, &address, ADMIN_EMAIL, GOOD_PASSWORD).await;
        Self::new(address, client, admin_token, admin_id, db, topology).await
    }

    /// The app, with what its setup wrote counted as the baseline.
    async fn new(
        address: String,
        client: reqwest::Client,
        admin_token: String,
        admin_id: String,
        db: TestDatabase,
        topology: TestTopology,
    ) -> Self {
        let mut app = TestApp {
            address,
            client,
            admin_token,
            admin_id,
            baseline_events: 0,
            baseline_claims: 0,
            db,
            topology,
        };
        app.baseline_events = app.event_count().await;
        app.baseline_claims = app.claim_count().await;
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_empty(&self, path: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_as(path, &self.admin_token).await
    }

    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// A request with `token` as the bearer (none when `None`).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends `method path` with `token` as the bearer and `body` as JSON.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let request = self.request(method, path, Some(token));
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
        .send()
        .await
        .expect("request")
    }

    /// Creates a role (as the admin) granting `permissions`: its id.
    pub async fn create_role(&self, name: &str, permissions: &[&str]) -> String {
        let body = json!({"name": name, "description": "test role", "permissions": permissions});
        let response = self.post_json("/v1/roles", &body).await;
        assert_eq!(response.status(), 201, "create role {name}");
        let created: Value = response.json().await.expect("json");
        created["id"].as_str().expect("id").to_string()
    }

    /// Assigns the role to the user (as the admin).
    pub async fn assign_role(&self, user_id: &str, role_id: &str) {
        let path = format!("/v1/users/{user_id}/roles");
        let response = self.post_json(&path, &json!({"role_id": role_id})).await;
        assert_eq!(response.status(), 200, "assign {role_id} to {user_id}");
    }

    /// A new user `<name>@example.com` holding exactly `permissions` through
    /// one role, logged in once the read models grant them:
    /// `(id, access token, role id)`.
    pub async fn user_holding(&self, name: &str, permissions: &[&str]) -> (String, String, String) {
        let role = self.create_role(&format!("{name}-role"), permissions).await;
        let email = format!("{name}@example.com");
        let (id, _) = self.register(&email, name).await;
        self.assign_role(&id, &role).await;
        let token =
            login_with_permissions(&self.client, &self.address, &email, GOOD_PASSWORD).await;
        (id, token, role)
    }

    /// Registers a user (as the admin) and logs them in: `(id, tokens)`.
    pub async fn user_with_session(&self, email: &str) -> (String, Value) {
        let (id, _) = self.register(email, "Someone").await;
        let tokens = login(&self.client, &self.address, email, GOOD_PASSWORD).await;
        (id, tokens)
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

    /// Waits until the read model has user `id` as of `position`, however
    /// long a busy machine (every test at once) keeps the projection behind.
    pub async fn await_user(&self, id: &str, position: i64) {
        let path = format!("/v1/users/{id}?min_position={position}");
        infra::testing::eventually(infra::testing::TIMEOUT, "the projection", || async {
            let status = self.get(&path).await.status();
            (status == 200).then_some(())
        })
        .await;
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

/// The strings of a JSON array, sorted.
pub fn sorted_strings(array: &Value) -> Vec<String> {
    let mut strings: Vec<String> = array
        .as_array()
        .expect("an array")
        .iter()
        .map(|value| value.as_str().expect("a string").to_owned())
        .collect();
    strings.sort_unstable();
    strings
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

/// Starts the `api` binary on the test's database and names (sign-up open,
/// the test's signing key, commands unlimited), and waits until it answers.
pub async fn start_api(db: &TestDatabase, topology: &TestTopology) -> ApiProcess {
    start_api_with(db, topology, &[], None).await
}

// ---- The worker, and apps and processes with more options ----

#[derive(clap::Parser)]
struct WorkerArgs {
    #[command(flatten)]
    settings: worker::settings::WorkerSettings,
}

/// The worker's consumer group (as `WorkerSettings::consumer_group`), for a
/// `TestTopology` that deletes its queues afterwards.
pub fn worker_group() -> bus::ConsumerGroup {
    worker::settings::consumer_group(10)
}

/// Worker settings as the binary would parse them, with the test's names.
pub fn worker_settings(
    common: &infra::settings::CommonSettings,
    extra: &[&str],
) -> worker::settings::WorkerSettings {
    let mut args = vec![
        "worker".to_string(),
        format!("--database-url={}", common.database_url.expose_secret()),
        format!("--amqp-url={}", common.amqp_url.expose_secret()),
        format!("--amqp-exchange={}", common.amqp_exchange),
        format!("--amqp-queue-prefix={}", common.amqp_queue_prefix),
        "--worker-addr=127.0.0.1:0".into(),
        "--migrate-on-start=false".into(),
        "--database-max-connections=5".into(),
        "--retry-base-ms=20".into(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    WorkerArgs::parse_from(args).settings
}

/// Declares the exchange and `group`'s queue with its bindings, as the
/// consumer will: what a process started in the background must have
/// before the relay publishes, or the broker drops the events.
async fn declare_group(common: &infra::settings::CommonSettings, group: &bus::ConsumerGroup) {
    let connection = infra::broker::connect(&common.amqp_url)
        .await
        .expect("connect broker");
    let channel = connection.create_channel().await.expect("channel");
    let topology = common.topology();
    topology
        .declare_exchange(&channel)
        .await
        .expect("declare exchange");
    topology
        .declare_group(&channel, group)
        .await
        .expect("declare the consumer's queue");
    let _ = connection.close(200, "declared".into()).await;
}

/// Runs the worker in this process. Its queue is declared before this
/// returns, so no event published from now on passes it by.
pub async fn spawn_worker(common: &infra::settings::CommonSettings, extra: &[&str]) {
    let settings = worker_settings(common, extra);
    declare_group(common, &settings.consumer_group()).await;
    let worker = worker::startup::Application::build(settings)
        .await
        .expect("build worker");
    tokio::spawn(worker.run_until_stopped());
}

/// `spawn_app_with(api_extra)`, plus the worker (with `worker_extra`) in
/// this process, started after the administrator's login; the topology
/// includes the worker's queues.
pub async fn spawn_app_with_worker(api_extra: &[&str], worker_extra: &[&str]) -> TestApp {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![
        projector_group(),
        worker_group(),
        worker::settings::webhook_consumer_group(10),
    ]);
    let settings = api_settings(&db, &topology, api_extra);
    let common = settings.common.clone();
    spawn_projector(&common).await;
    let application = api::startup::Application::build(settings)
        .await
        .expect("build api");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let app = TestApp::with_admin(address, db, topology).await;
    spawn_worker(&common, worker_extra).await;
    app
}

/// `start_api` with more environment variables, and its standard output
/// and error appended to `log` (discarded when `None`).
pub async fn start_api_with(
    db: &TestDatabase,
    topology: &TestTopology,
    env: &[(&str, &str)],
    log: Option<&std::path::Path>,
) -> ApiProcess {
    let address = format!("127.0.0.1:{}", free_port());
    let output = || match log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open log file"),
        ),
        None => Stdio::null(),
    };
    let child = Command::new(env!("CARGO_BIN_EXE_api"))
        .env("DATABASE_URL", &db.url)
        .env("AMQP_URL", amqp_url())
        .env("AMQP_EXCHANGE", &topology.topology.exchange)
        .env("AMQP_QUEUE_PREFIX", &topology.topology.queue_prefix)
        .env("API_ADDR", &address)
        .env("AUDIT_VERIFY_INTERVAL_MS", "100")
        .env("JWT_SIGNING_KEY_FILE", key_file(db))
        .env("SECOND_FACTOR_KEY_FILE", second_factor_key_file(db))
        .env("AUDIT_SIGNING_KEY_FILE", audit_key_file(db))
        .env("SIGNUP_MODE", "open")
        .env("MIGRATE_ON_START", "false")
        .env("RELAY_POLL_INTERVAL_MS", "200")
        .env("LOG_FORMAT", "json")
        .env("COMMAND_RATE_PER_SECOND", UNLIMITED)
        .env("COMMAND_RATE_BURST", UNLIMITED)
        .envs(env.iter().copied())
        .stdout(output())
        .stderr(output())
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

/// How many events of this type the event store holds.
pub async fn count_events(db: &TestDatabase, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(&db.pool)
        .await
        .expect("count events")
}

/// The `reason` of each `session.revoked` event of the session.
pub async fn revocation_reasons(db: &TestDatabase, session_id: &str) -> Vec<String> {
    sqlx::query_scalar(&format!(
        "SELECT payload -> 'Revoked' ->> 'reason' FROM events \
         WHERE aggregate_type = 'session' AND aggregate_id = $1 AND event_type = '{}' \
         ORDER BY sequence",
        domain::SessionEvent::REVOKED.name()
    ))
    .bind(session_id)
    .fetch_all(&db.pool)
    .await
    .expect("revocations")
}

/// Waits until every committed event is visible to the relay: a running
/// transaction of this database that began earlier holds back what the
/// relay may read until it ends.
pub async fn settled(pool: &sqlx::PgPool) {
    eventually(
        Duration::from_secs(10),
        "committed events visible",
        || async {
            let held: bool = sqlx::query_scalar(&format!(
                "SELECT EXISTS (SELECT 1 FROM events WHERE transaction_id >= {})",
                infra::event_log::HORIZON
            ))
            .fetch_one(pool)
            .await
            .unwrap();
            (!held).then_some(())
        },
    )
    .await;
}
