//! The health server the projector and the worker run
//! (`infra::health::serve_on`), over real HTTP: an unknown path is a `404`
//! problem, another method on a health route a `405` problem with `Allow`,
//! and `HEAD` is answered like `GET`.

use std::io::{Read, Write};
use std::sync::Arc;

use infra::broker::BrokerLink;
use infra::health::{serve_on, Readiness};
use infra::testing::{amqp_url, TestDatabase};
use serde_json::Value;

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`).
async fn request(port: u16, method: &str, path: &str) -> Answer {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read");
        let raw = String::from_utf8(raw).expect("utf-8 answer");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
        let mut lines = head.lines();
        let status = lines.next().unwrap().split(' ').nth(1).unwrap();
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
            .collect();
        Answer {
            status: status.parse().unwrap(),
            headers,
            body: body.to_owned(),
        }
    })
    .await
    .unwrap()
}

fn assert_problem(answer: &Answer, status: u16, kind: &str) -> Value {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    let problem: Value = serde_json::from_str(&answer.body).expect("a JSON problem");
    assert_eq!(
        problem["type"],
        format!("https://identity.example/problems/{kind}")
    );
    assert_eq!(problem["status"], status);
    assert!(problem["title"].is_string(), "{problem}");
    assert!(problem["detail"].is_string(), "{problem}");
    problem
}

#[tokio::test]
async fn the_health_server_answers_unknown_paths_and_methods_with_problems() {
    let db = TestDatabase::create().await;
    let readiness = Readiness::new(
        db.pool.clone(),
        Arc::new(BrokerLink::new(amqp_url().into())),
    );
    let (port, server) = serve_on("127.0.0.1:0", readiness).expect("serve");
    let handle = server.handle();
    tokio::spawn(server);

    for path in ["/", "/nowhere", "/health", "/health/live/more", "/v1/users"] {
        let answer = request(port, "GET", path).await;
        let problem = assert_problem(&answer, 404, "not-found");
        assert_eq!(problem["title"], "Not found");
        assert_eq!(answer.header("allow"), None, "{path}");
    }
    let answer = request(port, "POST", "/nowhere").await;
    assert_problem(&answer, 404, "not-found");

    for path in ["/health/live", "/health/ready", "/metrics"] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let answer = request(port, method, path).await;
            assert_problem(&answer, 405, "method-not-allowed");
            assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{method} {path}");
        }
        let get = request(port, "GET", path).await;
        assert_eq!(get.status, 200, "GET {path}: {}", get.body);
        let head = request(port, "HEAD", path).await;
        assert_eq!(head.status, 200, "HEAD {path}");
        assert_eq!(head.body, "", "HEAD {path} has no body");
    }
    let live: Value = serde_json::from_str(&request(port, "GET", "/health/live").await.body)
        .expect("live is JSON");
    assert_eq!(live["status"], "ok");

    handle.stop(true).await;
}

/// Readiness against a database and a broker at closed ports and a key file
/// that is not there: a `503` problem naming each, then `200` once they are.
#[tokio::test]
async fn not_ready_is_a_problem_naming_each_missing_dependency() {
    let closed = infra::testing::free_port();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(1))
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{closed}/nothing"))
        .expect("a lazy pool");
    let broker = BrokerLink::new(format!("amqp://guest:guest@127.0.0.1:{closed}/%2f").into());
    let key = std::env::temp_dir().join(format!("no-key-{}.pem", uuid::Uuid::new_v4()));
    let readiness = Readiness::new(pool, Arc::new(broker))
        .with_key_file(infra::health::SIGNING_KEY, key.clone());
    let (port, server) = serve_on("127.0.0.1:0", readiness).expect("serve");
    let handle = server.handle();
    tokio::spawn(server);

    let answer = request(port, "GET", "/health/ready").await;

    let problem = assert_problem(&answer, 503, "not-ready");
    assert_eq!(
        problem["missing"],
        serde_json::json!(["database", "broker", "signing_key"])
    );
    assert_eq!(
        problem["detail"],
        "unavailable: database, broker, signing_key"
    );
    assert_eq!(problem["checks"]["database"], false);
    assert!(answer.header("retry-after").is_some());
    handle.stop(true).await;

    let db = TestDatabase::create().await;
    std::fs::write(&key, "a key").expect("write the key file");
    let readiness = Readiness::new(
        db.pool.clone(),
        Arc::new(BrokerLink::new(amqp_url().into())),
    )
    .with_key_file(infra::health::SIGNING_KEY, key.clone());
    let (port, server) = serve_on("127.0.0.1:0", readiness).expect("serve");
    let handle = server.handle();
    tokio::spawn(server);
    let answer = request(port, "GET", "/health/ready").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let ready: Value = serde_json::from_str(&answer.body).expect("JSON");
    assert_eq!(ready["checks"]["signing_key"], true);
    std::fs::remove_file(&key).expect("remove the key file");
    let answer = request(port, "GET", "/health/ready").await;
    let problem = assert_problem(&answer, 503, "not-ready");
    assert_eq!(problem["missing"], serde_json::json!(["signing_key"]));
    handle.stop(true).await;
}
