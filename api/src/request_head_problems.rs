//! Problems for the request heads actix-http refuses by itself.
//!
//! actix-http's HTTP/1 dispatcher answers a request head it cannot parse
//! (`400`), one over its limits (`431`: 128 KiB, or more than 96 header
//! fields) and one that does not arrive in time (`408`) before any service
//! or middleware runs, with an empty body, and offers no hook to change
//! that. [`ProblemAnswering`] wraps each accepted connection and replaces
//! exactly those answers, as they are written, with the problem of their
//! status.
//!
//! An answer is replaced only when one write is that whole answer and
//! nothing else: a complete response head with one of those statuses, no
//! body, and no header but `content-length: 0`, `connection` and `date`.
//! The application never writes such a response (its errors carry a
//! problem body, and every response it writes carries the security
//! headers), so nothing it writes is touched. A client that pipelines, and
//! whose broken head arrives behind a response still being written, keeps
//! the empty answer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::problem::{ApiError, PROBLEM};

/// The statuses the dispatcher answers by itself, and the problem of each.
fn problem_for(status: StatusCode) -> Option<ApiError> {
    match status {
        StatusCode::BAD_REQUEST => Some(ApiError::MalformedRequestHead),
        StatusCode::REQUEST_TIMEOUT => Some(ApiError::RequestHeadTimeout),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Some(ApiError::RequestHeadTooLarge),
        // Its answer to a payload chunk it did not expect.
        StatusCode::INTERNAL_SERVER_ERROR => Some(ApiError::Other(status)),
        _ => None,
    }
}

/// The status codes of [`problem_for`], as written (and as labelled).
const REFUSAL_CODES: [&str; 4] = ["400", "408", "431", "500"];

/// Refusals answered, labelled `status` (one of [`REFUSAL_CODES`]).
pub const REQUEST_HEADS_REFUSED: &str = "http_request_heads_refused_total";

/// Describes [`REQUEST_HEADS_REFUSED`] and starts it at zero.
pub fn register_metrics() {
    metrics::describe_counter!(
        REQUEST_HEADS_REFUSED,
        metrics::Unit::Count,
        "Request heads refused before any route ran: 400 unparsable, 408 too slow, 431 too large."
    );
    for status in REFUSAL_CODES {
        metrics::counter!(REQUEST_HEADS_REFUSED, "status" => status).increment(0);
    }
}

/// The dispatcher's answer seen in one write.
#[derive(Debug, PartialEq, Eq)]
struct Refusal<'a> {
    minor_version: u8,
    status: StatusCode,
    date: Option<&'a [u8]>,
}

/// `Some` when `written` is exactly one bodiless answer of a refusal status
/// with only the headers the dispatcher writes.
fn refusal(written: &[u8]) -> Option<Refusal<'_>> {
    // Every write passes here: most are let go after twelve bytes.
    let code = written.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    problem_for(StatusCode::from_bytes(code).ok()?)?;
    // One more slot than the dispatcher writes: a fourth header is not its.
    let mut headers = [httparse::EMPTY_HEADER; 4];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(length) = response.parse(written).ok()? else {
        return None;
    };
    let status = StatusCode::from_u16(response.code?).ok()?;
    if length != written.len() || problem_for(status).is_none() {
        return None;
    }
    let mut bodiless = false;
    let mut date = None;
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            bodiless = header.value == b"0";
        } else if name.eq_ignore_ascii_case("date") {
            date = Some(header.value);
        } else if !name.eq_ignore_ascii_case("connection") {
            return None;
        }
    }
    bodiless.then_some(Refusal {
        minor_version: response.version?,
        status,
        date,
    })
}

/// Renders the problem answers; shared by every connection of a server.
#[derive(Clone)]
pub struct HeadProblems {
    /// Written on every answer, as the security-headers middleware would.
    headers: Arc<[(HeaderName, HeaderValue)]>,
}

impl HeadProblems {
    pub fn new(headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        Self {
            headers: headers.into(),
        }
    }

    /// The problem answer that replaces `written`, if it is a refusal.
    fn answer_for(&self, written: &[u8]) -> Option<Vec<u8>> {
        let refusal = refusal(written)?;
        let body = problem_for(refusal.status)?.problem_json();
        metrics::counter!(REQUEST_HEADS_REFUSED, "status" => refusal.status.as_str().to_owned())
            .increment(1);
        let mut answer = format!(
            "HTTP/1.{} {} {}\r\ncontent-type: {PROBLEM}\r\ncontent-length: {}\r\nconnection: close\r\n",
            refusal.minor_version,
            refusal.status.as_str(),
            refusal.status.canonical_reason().unwrap_or("Error"),
            body.len(),
        )
        .into_bytes();
        if let Some(date) = refusal.date {
            append_header(&mut answer, b"date", date);
        }
        for (name, value) in self.headers.iter() {
            append_header(&mut answer, name.as_str().as_bytes(), value.as_bytes());
        }
        answer.extend_from_slice(b"\r\n");
        answer.extend_from_slice(body.as_bytes());
        Some(answer)
    }
}

fn append_header(answer: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    answer.extend_from_slice(name);
    answer.extend_from_slice(b": ");
    answer.extend_from_slice(value);
    answer.extend_from_slice(b"\r\n");
}

/// How long a refused connection is drained after its answer (see
/// [`linger`]).
const LINGER: Duration = Duration::from_secs(2);
/// At most this much is read and dropped while draining.
const LINGER_BYTES: usize = 1 << 20;

/// A connection whose refusals are written as problems (see the module).
pub struct ProblemAnswering<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    /// Taken only when a refused connection is dropped, to [`linger`].
    io: Option<T>,
    problems: HeadProblems,
    /// A problem answer accepted in place of a refusal, and how much of it
    /// is written; it is finished before anything else is written.
    pending: Option<(Vec<u8>, usize)>,
    refused: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ProblemAnswering<T> {
    pub fn new(io: T, problems: HeadProblems) -> Self {
        Self {
            io: Some(io),
            problems,
            pending: None,
            refused: false,
        }
    }

    fn io(&mut self) -> Pin<&mut T> {
        Pin::new(
            self.io
                .as_mut()
                .expect("the connection is taken only on drop"),
        )
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((answer, written)) = &mut self.pending {
            let io = Pin::new(
                self.io
                    .as_mut()
                    .expect("the connection is taken only on drop"),
            );
            let wrote = ready!(io.poll_write(cx, &answer[*written..]))?;
            if wrote == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += wrote;
            if *written == answer.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// actix-http drops a connection as soon as a refusal is handed over, often
/// with more of the request unread; closing a socket with unread data
/// sends a reset, and the client's TCP discards the answer it had not read
/// yet. So a refused connection finishes its answer, closes its sending
/// half, and reads and drops what the client still sends, for a bounded
/// time and size, before it closes (nginx's "lingering close").
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for ProblemAnswering<T> {
    fn drop(&mut self) {
        if !self.refused {
            return;
        }
        let (Some(io), Ok(runtime)) = (self.io.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let unwritten = self
            .pending
            .take()
            .map(|(answer, written)| answer[written..].to_vec())
            .unwrap_or_default();
        runtime.spawn(linger(io, unwritten));
    }
}

async fn linger<T: AsyncRead + AsyncWrite + Unpin>(mut io: T, unwritten: Vec<u8>) {
    let drain = async {
        io.write_all(&unwritten).await?;
        io.shutdown().await?;
        let mut scratch = [0; 8192];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match io.read(&mut scratch).await? {
                0 => break,
                read => drained += read,
            }
        }
        Ok::<_, io::Error>(())
    };
    // Whatever ends it, the connection closes here.
    let _ = tokio::time::timeout(LINGER, drain).await;
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for ProblemAnswering<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for ProblemAnswering<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let Some(answer) = this.problems.answer_for(buf) else {
            return this.io().poll_write(cx, buf);
        };
        this.pending = Some((answer, 0));
        this.refused = true;
        // The refusal counts as written; the rest of the answer goes out
        // on the next write, flush or shutdown, or else when dropped.
        if let Poll::Ready(Err(error)) = this.poll_pending(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        this.io().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        this.io().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "date: Fri, 27 Nov 2026 21:00:00 GMT\r\n";

    fn problems() -> HeadProblems {
        HeadProblems::new(vec![(
            actix_web::http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        )])
    }

    /// What actix-http's dispatcher writes for a refused head.
    fn dispatcher_refusal(status: &str) -> String {
        format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n{DATE}\r\n")
    }

    #[test]
    fn each_refusal_of_the_dispatcher_is_recognised() {
        for (line, status) in [
            ("400 Bad Request", StatusCode::BAD_REQUEST),
            ("408 Request Timeout", StatusCode::REQUEST_TIMEOUT),
            (
                "431 Request Header Fields Too Large",
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ),
            (
                "500 Internal Server Error",
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ] {
            let written = dispatcher_refusal(line);
            let seen = refusal(written.as_bytes()).expect(line);
            assert_eq!(seen.status, status);
            assert_eq!(seen.minor_version, 1);
            assert_eq!(seen.date, Some(&b"Fri, 27 Nov 2026 21:00:00 GMT"[..]));
        }
        let without_connection =
            format!("HTTP/1.0 400 Bad Request\r\ncontent-length: 0\r\n{DATE}\r\n");
        assert_eq!(
            refusal(without_connection.as_bytes())
                .unwrap()
                .minor_version,
            0
        );
    }

    #[test]
    fn every_labelled_status_has_its_problem() {
        for code in REFUSAL_CODES {
            let status = StatusCode::from_bytes(code.as_bytes()).unwrap();
            assert!(problem_for(status).is_some(), "{code}");
        }
    }

    #[test]
    fn anything_else_is_not_a_refusal() {
        let not_refusals = [
            // Another status.
            dispatcher_refusal("404 Not Found"),
            // With a body.
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}".to_string(),
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n".to_string(),
            // Without a length (a streamed body follows).
            "HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n".to_string(),
            // A header the dispatcher does not write: the application's.
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-content-type-options: nosniff\r\n{DATE}\r\n"),
            // Not complete, or followed by more.
            dispatcher_refusal("400 Bad Request").trim_end().to_string(),
            format!("{}HTTP/1.1 200 OK\r\n", dispatcher_refusal("400 Bad Request")),
            // Behind another response's bytes.
            format!("}}{}", dispatcher_refusal("400 Bad Request")),
            "{\"display_name\": \"HTTP/1.1 400 Bad Request\"}".to_string(),
            String::new(),
        ];
        for written in not_refusals {
            assert_eq!(refusal(written.as_bytes()), None, "{written:?}");
        }
    }

    #[test]
    fn the_answer_is_the_problem_of_the_status_with_the_security_headers() {
        let answer = problems()
            .answer_for(dispatcher_refusal("431 Request Header Fields Too Large").as_bytes())
            .unwrap();
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(&answer).unwrap() else {
            panic!("incomplete answer");
        };
        assert_eq!(response.code, Some(431));
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name == name)
                .map(|h| String::from_utf8_lossy(h.value).to_string())
        };
        assert_eq!(header("content-type").as_deref(), Some(PROBLEM));
        assert_eq!(header("connection").as_deref(), Some("close"));
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(
            header("date").as_deref(),
            Some("Fri, 27 Nov 2026 21:00:00 GMT")
        );
        let body: serde_json::Value = serde_json::from_slice(&answer[head..]).unwrap();
        assert_eq!(
            header("content-length"),
            Some(answer[head..].len().to_string())
        );
        assert_eq!(body["status"], 431);
        assert_eq!(
            body["type"],
            "https://identity.example/problems/request-head-too-large"
        );
    }

    #[tokio::test]
    async fn a_connection_writes_the_problem_in_place_of_the_refusal_and_the_rest_unchanged() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut connection = ProblemAnswering::new(near, problems());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let refused = dispatcher_refusal("400 Bad Request");
        let writer = async move {
            connection.write_all(ok).await.unwrap();
            // `write_all` sees the refusal accepted whole, in one write.
            connection.write_all(refused.as_bytes()).await.unwrap();
            connection.shutdown().await.unwrap();
        };
        let mut received = Vec::new();
        let ((), read) = tokio::join!(writer, far.read_to_end(&mut received));
        read.unwrap();
        let received = String::from_utf8(received).unwrap();
        let (first, problem) = received.split_at(ok.len());
        assert_eq!(first.as_bytes(), ok);
        assert!(
            problem.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{problem}"
        );
        assert!(problem.ends_with("/malformed-request\",\"title\":\"Malformed request\",\"status\":400,\"detail\":\"the request line or a header field could not be parsed\"}"), "{problem}");
    }

    #[tokio::test]
    async fn a_connection_dropped_right_after_its_refusal_still_delivers_the_whole_answer() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut connection = ProblemAnswering::new(near, problems());
        let refused = dispatcher_refusal("431 Request Header Fields Too Large");
        // What the dispatcher does: hand the refusal over once, and drop.
        let accepted = connection.write(refused.as_bytes()).await.unwrap();
        assert_eq!(accepted, refused.len());
        drop(connection);
        far.shutdown().await.unwrap();
        let mut received = Vec::new();
        far.read_to_end(&mut received).await.unwrap();
        let received = String::from_utf8(received).unwrap();
        assert!(received.starts_with("HTTP/1.1 431 "), "{received}");
        assert!(
            received.ends_with("more than 96 header fields\"}"),
            "{received}"
        );
    }
}
