//! One HTTP attempt: POST the body with the Standard Webhooks headers to
//! the addresses the destination check approved, no redirects, bounded by
//! the timeout.

use std::time::Duration;

use infra::webhooks::Destination;
use reqwest::header::{HeaderValue, CONTENT_TYPE};

use super::signing::{HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP};

/// A client bound to one checked destination: its host name resolves only
/// to the addresses that were checked, so DNS cannot be rebound between the
/// check and the connection.
pub fn client_for(
    destination: &Destination,
    timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
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
