//! `/health/ready` of an api whose broker is at a closed port and whose JWT
//! signing key file went away: a `503` problem naming both.

use infra::testing::{free_port, http_request, TestDatabase, TestTopology};
use serde_json::{json, Value};

use crate::support::{api_settings, key_file, projector_group};

#[tokio::test]
async fn readiness_names_the_broker_and_the_signing_key_when_they_are_missing() {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![projector_group()]);
    let mut settings = api_settings(&db, &topology, &[]);
    let closed = free_port();
    settings.common.amqp_url = format!("amqp://guest:guest@127.0.0.1:{closed}/%2f").into();
    let application = api::startup::Application::build(settings)
        .await
        .expect("the api starts without its broker");
    let port = application.port();
    tokio::spawn(application.run_until_stopped());

    let answer = http_request(port, "GET", "/health/ready").await;
    let problem = not_ready(&answer);
    assert_eq!(problem["missing"], json!(["broker"]), "{problem}");
    assert_eq!(problem["checks"]["database"], true);

    std::fs::remove_file(key_file(&db)).expect("remove the signing key");
    let answer = http_request(port, "GET", "/health/ready").await;
    let problem = not_ready(&answer);
    assert_eq!(problem["missing"], json!(["broker", "signing_key"]));
    assert_eq!(problem["detail"], "unavailable: broker, signing_key");
}

fn not_ready(answer: &infra::testing::HttpAnswer) -> Value {
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    assert!(answer.header("retry-after").is_some());
    let problem: Value = serde_json::from_str(&answer.body).expect("a JSON problem");
    assert_eq!(
        problem["type"],
        "https://identity.example/problems/not-ready"
    );
    assert_eq!(problem["status"], 503);
    problem
}
