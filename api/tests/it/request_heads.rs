//! Request heads actix-http refuses before any route runs (unparsable, too
//! large, too slow) are answered with problems like every other error, over
//! a raw connection as an attacker would send them; the answers before them
//! on a kept-alive or pipelined connection are left exactly as they were.

use std::time::Duration;

use api::http_metrics::REQUEST_HEADS_REFUSED;
use infra::testing::scrape;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{spawn_app, spawn_app_with, TestApp};

/// How long a refused connection may take to answer and close.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Everything the server writes until it closes the connection.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(ANSWER_TIMEOUT, stream.read_to_end(&mut received))
        .await
        .expect("the server neither answered nor closed")
        .unwrap();
    received
}

/// Sends `request` on a new connection; the answer, read until it closes.
async fn exchange(app: &TestApp, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(app).await;
    // The server may answer and close before it has read all of it.
    let _ = stream.write_all(request).await;
    read_until_closed(&mut stream).await
}

/// One response: its status, its headers (lowercase names) and its body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Splits `received` into the responses it holds, by `content-length`.
fn answers(mut received: &[u8]) -> Vec<Answer> {
    let mut answers = Vec::new();
    while !received.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(received).unwrap() else {
            panic!(
                "an incomplete answer: {}",
                String::from_utf8_lossy(received)
            );
        };
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).to_string();
                (h.name.to_ascii_lowercase(), value)
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .map(|(_, value)| value.parse().unwrap())
            .expect("every answer here has a content-length");
        answers.push(Answer {
            status: response.code.unwrap(),
            headers,
            body: received[head..head + length].to_vec(),
        });
        received = &received[head + length..];
    }
    answers
}

/// The one answer in `received`, a problem of `status` and `kind` with the
/// security headers, on a connection the server closes.
fn assert_head_problem(received: &[u8], status: u16, kind: &str) -> Value {
    let mut all = answers(received);
    assert_eq!(all.len(), 1, "{}", String::from_utf8_lossy(received));
    let answer = all.remove(0);
    assert_eq!(answer.status, status);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let problem: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        problem["type"],
        format!("https://identity.example/problems/{kind}")
    );
    assert_eq!(problem["status"], status);
    assert!(problem["title"].is_string() && problem["detail"].is_string());
    problem
}

fn refused_heads(page: &infra::testing::MetricsPage, status: &str) -> f64 {
    page.families[REQUEST_HEADS_REFUSED]
        .samples
        .iter()
        .filter(|sample| sample.labels.get("status").map(String::as_str) == Some(status))
        .map(|sample| sample.value)
        .sum()
}

fn port_of(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn an_unparsable_request_head_is_a_400_problem() {
    let app = spawn_app().await;
    for request in [
        &b"GET /health/live HTTP/1.1\r\nhost: x\r\na header without a colon\r\n\r\n"[..],
        b"G\x01T /health/live HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET /health/live HTTP/9.7\r\nhost: x\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-value: a\x00b\r\n\r\n",
    ] {
        let received = exchange(&app, request).await;
        let problem = assert_head_problem(&received, 400, "malformed-request");
        assert_eq!(
            problem["detail"],
            "the request line or a header field could not be parsed"
        );
    }
}

#[tokio::test]
async fn an_oversized_request_head_is_a_431_problem() {
    let app = spawn_app().await;
    let before = refused_heads(&scrape(port_of(&app)).await, "431");
    let huge_query = format!(
        "GET /v1/users?email={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(200_000)
    );
    let many_headers = format!(
        "GET /health/live HTTP/1.1\r\nhost: x\r\n{}\r\n",
        (0..100)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    for request in [huge_query, many_headers] {
        let received = exchange(&app, request.as_bytes()).await;
        assert_head_problem(&received, 431, "request-head-too-large");
    }
    // Other tests of this binary share the recorder: only ever more.
    let after = refused_heads(&scrape(port_of(&app)).await, "431");
    assert!(after >= before + 2.0, "{before} -> {after}");
}

#[tokio::test]
async fn a_request_head_sent_too_slowly_is_a_408_problem() {
    let app = spawn_app_with(&["--request-head-timeout-ms=1000"]).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // The blank line that would end the head never comes.
    let received = read_until_closed(&mut stream).await;
    let problem = assert_head_problem(&received, 408, "request-timeout");
    assert_eq!(problem["detail"], "the request head did not arrive in time");
}

#[tokio::test]
async fn a_refused_head_on_a_kept_alive_connection_is_a_problem_after_an_unchanged_answer() {
    let app = spawn_app().await;
    let mut stream = connect(&app).await;
    let good = b"GET /.well-known/jwks.json HTTP/1.1\r\nhost: x\r\n\r\n";
    stream.write_all(good).await.unwrap();
    let mut first = Vec::new();
    while answers_complete(&first).is_none() {
        let mut chunk = [0; 4096];
        let read = tokio::time::timeout(ANSWER_TIMEOUT, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(read > 0, "closed after {}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&chunk[..read]);
    }
    let jwks = &answers(&first)[0];
    assert_eq!(jwks.status, 200);
    let keys: Value = serde_json::from_slice(&jwks.body).unwrap();
    assert!(keys["keys"].is_array(), "{keys}");

    stream
        .write_all(b"GET /v1/users?email=\x7f\x00 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let received = read_until_closed(&mut stream).await;
    assert_head_problem(&received, 400, "malformed-request");
}

/// The length of the first answer in `received`, once all of it is there.
fn answers_complete(received: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(received).ok()? else {
        return None;
    };
    let length: usize = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())?;
    (received.len() >= head + length).then_some(head + length)
}

#[tokio::test]
async fn pipelined_answers_before_a_refused_head_are_written_unchanged() {
    let app = spawn_app().await;
    let good = "GET /.well-known/jwks.json HTTP/1.1\r\nhost: x\r\n\r\n";
    let request = format!("{good}{good}GET / HTTP/1.1\r\nbroken header\r\n\r\n");
    let received = exchange(&app, request.as_bytes()).await;
    let all = answers(&received);
    assert_eq!(all.len(), 3, "{}", String::from_utf8_lossy(&received));
    for jwks in &all[..2] {
        assert_eq!(jwks.status, 200);
        let keys: Value = serde_json::from_slice(&jwks.body).unwrap();
        assert!(keys["keys"].is_array(), "{keys}");
    }
    // Written behind the others, it may keep actix's empty body (see
    // `api::request_head_problems`); it is never mixed into them.
    let refused = &all[2];
    assert_eq!(refused.status, 400);
    if !refused.body.is_empty() {
        let problem: Value = serde_json::from_slice(&refused.body).unwrap();
        assert_eq!(problem["status"], 400);
    }
}
