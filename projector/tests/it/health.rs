//! The projector binary with its broker at a closed port: it keeps serving
//! `/health/ready`, a `503` problem naming the broker.

use infra::testing::{eventually, free_port, http_request, TIMEOUT};
use serde_json::{json, Value};

use crate::support::{run, Fixture};

#[tokio::test]
async fn readiness_names_the_broker_when_it_is_unreachable() {
    let port = free_port();
    let closed = free_port();
    let fx = Fixture::new(|settings| {
        settings.projector_addr = format!("127.0.0.1:{port}");
        settings.common.amqp_url = format!("amqp://guest:guest@127.0.0.1:{closed}/%2f").into();
    })
    .await;
    let _projector = run::spawn_binary(&fx.settings, 1);

    let answer = eventually(TIMEOUT, "the health server", || async {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        Some(http_request(port, "GET", "/health/ready").await)
    })
    .await;

    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    let problem: Value = serde_json::from_str(&answer.body).expect("a JSON problem");
    assert_eq!(problem["missing"], json!(["broker"]), "{problem}");
    assert_eq!(problem["detail"], "unavailable: broker");
    assert_eq!(problem["checks"]["database"], true);
}
