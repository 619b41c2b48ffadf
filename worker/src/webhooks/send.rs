//! One HTTP attempt: POST the body with the Standard Webhooks headers to
//! the addresses the destination check approved, no redirects, bounded by
//! the timeout.

use std::time::Duration;

use infra::webhooks::Destination;
use reqwest::header::{HeaderValue, CONTENT_TYPE};

use super::signing::{HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP};

/// A client bound to one checked destination: its host name resolves only
/// to the addresses that were checked, so DNS cannot be rebound between the
/// check and the connection. It never goes through a proxy (`HTTP_PROXY`,
/// `HTTPS_PROXY`, `ALL_PROXY` are ignored): a proxy would resolve the name
/// again and connect wherever that answer points.
pub fn client_for(
    destination: &Destination,
    timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!(
            "identity-service-webhooks/",
            env!("CARGO_PKG_VERSION")
        ));
    if let Some(domain) = &destination.domain {
        builder = builder.resolve_to_addrs(domain, &destination.addresses);
    }
    builder.build()
}

/// The signed message.
pub struct Message<'a> {
    pub id: &'a str,
    pub timestamp: i64,
    pub signature: &'a str,
    pub body: Vec<u8>,
}

/// Why an attempt got no 2xx.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the receiver answered {0}")]
    Status(u16),
    #[error("timed out")]
    Timeout,
    #[error("could not connect")]
    Connect,
    #[error("the request failed")]
    Request(#[source] reqwest::Error),
    #[error("a header value is not valid")]
    Header(#[from] reqwest::header::InvalidHeaderValue),
}

impl SendError {
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Self::Status(status) => Some(*status),
            _ => None,
        }
    }
}

/// Sends; `Ok` with the status for a 2xx.
pub async fn send(
    client: &reqwest::Client,
    url: &url::Url,
    message: Message<'_>,
) -> Result<u16, SendError> {
    let response = client
        .post(url.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(HEADER_WEBHOOK_ID, HeaderValue::from_str(message.id)?)
        .header(HEADER_WEBHOOK_TIMESTAMP, message.timestamp.to_string())
        .header(
            HEADER_WEBHOOK_SIGNATURE,
            HeaderValue::from_str(message.signature)?,
        )
        .body(message.body)
        .send()
        .await
        .map_err(|error| {
            if error.is_timeout() {
                SendError::Timeout
            } else if error.is_connect() {
                SendError::Connect
            } else {
                SendError::Request(error)
            }
        })?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        Ok(status)
    } else {
        Err(SendError::Status(status))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const PROXY_VARIABLES: [&str; 6] = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ];

    /// Counts the connections it accepts; answers each with `answer`.
    async fn listener(answer: &'static [u8]) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = vec![0; 8192];
                    let _ = stream.read(&mut request).await;
                    let _ = stream.write_all(answer).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (address, accepted)
    }

    /// An attacker who controls the name's DNS (or an operator's proxy that
    /// resolves it again) must not get the delivery sent anywhere but the
    /// checked address: with every proxy variable set, the delivery goes
    /// straight to the checked address and the proxy sees no connection.
    #[tokio::test]
    async fn deliveries_ignore_proxy_variables_and_connect_to_the_checked_address() {
        let (proxy, proxied) =
            listener(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n").await;
        let (receiver, received) =
            listener(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").await;
        let url: url::Url = format!("http://hook.rebound.invalid:{}/hook", receiver.port())
            .parse()
            .unwrap();
        let destination = Destination {
            url: url.clone(),
            domain: Some("hook.rebound.invalid".into()),
            addresses: vec![receiver],
        };
        // The proxy is read from the environment when the client is built;
        // the variables are set only around that.
        let proxy_url = format!("http://{proxy}");
        let saved: Vec<_> = PROXY_VARIABLES
            .iter()
            .map(|name| (*name, std::env::var_os(name)))
            .collect();
        for name in PROXY_VARIABLES {
            std::env::set_var(name, &proxy_url);
        }
        let built = client_for(&destination, Duration::from_secs(5));
        for (name, value) in saved {
            match value {
                Some(value) => std::env::set_var(name, value),
                None => std::env::remove_var(name),
            }
        }
        let client = built.unwrap();
        let sent = send(
            &client,
            &url,
            Message {
                id: "msg_1",
                timestamp: 0,
                signature: "v1,x",
                body: b"{}".to_vec(),
            },
        )
        .await;
        assert_eq!(proxied.load(Ordering::SeqCst), 0, "the proxy was used");
        assert_eq!(sent.unwrap(), 204);
        assert_eq!(received.load(Ordering::SeqCst), 1);
    }
}
