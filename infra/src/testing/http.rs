//! A plain HTTP/1.1 request over a socket, for the processes whose tests
//! have no HTTP client (health and metrics of the projector, the worker, the
//! relay), and for methods a client library refuses to send.

use std::io::{Read, Write};
use std::time::Duration;

/// One answer: status, headers (as sent) and body.
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// `method path` on its own connection to `127.0.0.1:port`
/// (`Connection: close`, no body).
pub async fn http_request(port: u16, method: &str, path: &str) -> HttpAnswer {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tokio::task::spawn_blocking(move || exchange(port, &request))
        .await
        .expect("the request task")
}

fn exchange(port: u16, request: &str) -> HttpAnswer {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let raw = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.lines();
    let status = lines.next().and_then(|line| line.split(' ').nth(1));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    HttpAnswer {
        status: status.and_then(|s| s.parse().ok()).expect("a status"),
        headers,
        body: body.to_owned(),
    }
}

/// A port nothing listens on right now (bound, then released), for a
/// child process that must be told its address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until the process at `port` answers `GET /health/ready` with 200.
pub async fn wait_until_ready(port: u16) {
    super::eventually(super::TIMEOUT, "the process ready", || async move {
        let connected = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !connected {
            return None;
        }
        (http_request(port, "GET", "/health/ready").await.status == 200).then_some(())
    })
    .await;
}

/// The process's `/metrics` page, read.
pub async fn scrape(port: u16) -> super::MetricsPage {
    let answer = http_request(port, "GET", "/metrics").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    super::MetricsPage::parse(&answer.body)
}
