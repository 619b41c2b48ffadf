//! Server-side request forgery: a webhook's host is resolved and refused if
//! ANY of its addresses is internal (`domain::webhook::is_forbidden_address`),
//! unless the operator allows private networks; plain `http` only when
//! allowed. The worker connects only to the addresses checked here, so a
//! DNS answer that changes between the check and the request (rebinding)
//! cannot send it elsewhere.

use std::io;
use std::net::{IpAddr, SocketAddr};

use domain::webhook::{is_forbidden_address, WebhookUrl};
use url::Host;

/// Where webhooks may be delivered. Read by the api (registration) and the
/// worker (every delivery).
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct DestinationPolicy {
    /// Allow webhook URLs with plain `http` (development and tests).
    #[arg(long, env = "WEBHOOKS_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhooks_allow_http: bool,

    /// Allow webhook URLs that resolve to loopback, private, link-local or
    /// other internal addresses (development and tests).
    #[arg(long, env = "WEBHOOKS_ALLOW_PRIVATE_NETWORKS", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhooks_allow_private_networks: bool,
}

/// Why a webhook URL may not be delivered to.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("must use https")]
    PlainHttp,
    #[error("the host does not resolve")]
    Unresolvable(#[source] io::Error),
    #[error("the host resolves to no address")]
    NoAddress,
    #[error("must not resolve to a loopback, private, link-local or other internal address")]
    Internal(IpAddr),
}

impl DestinationError {
    /// The message for the `url` field of a 422 problem: the address is not
    /// repeated (it would tell a caller what the service's DNS sees).
    pub fn message(&self) -> &'static str {
        match self {
            Self::PlainHttp => "must use https",
            Self::Unresolvable(_) | Self::NoAddress => "the host must resolve",
            Self::Internal(_) => {
                "must not resolve to a loopback, private, link-local or other internal address"
            }
        }
    }
}

/// A checked URL: the host to name in the request and the addresses to
/// connect to.
#[derive(Debug, Clone)]
pub struct Destination {
    pub url: url::Url,
    /// The host name, when the URL names one (not an address literal).
    pub domain: Option<String>,
    pub addresses: Vec<SocketAddr>,
}

impl DestinationPolicy {
    /// Resolves the URL's host and checks every address.
    pub async fn check(&self, url: &WebhookUrl) -> Result<Destination, DestinationError> {
        let parsed = url.url();
        if !self.webhooks_allow_http && !url.is_https() {
            return Err(DestinationError::PlainHttp);
        }
        let port = parsed.port_or_known_default().unwrap_or(443);
        let (domain, addresses) = resolve(&parsed, port).await?;
        if addresses.is_empty() {
            return Err(DestinationError::NoAddress);
        }
        if !self.webhooks_allow_private_networks {
            if let Some(internal) = addresses.iter().find(|a| is_forbidden_address(a.ip())) {
                return Err(DestinationError::Internal(internal.ip()));
            }
        }
        Ok(Destination {
            url: parsed,
            domain,
            addresses,
        })
    }
}

async fn resolve(
    url: &url::Url,
    port: u16,
) -> Result<(Option<String>, Vec<SocketAddr>), DestinationError> {
    match url.host() {
        Some(Host::Ipv4(v4)) => Ok((None, vec![SocketAddr::new(v4.into(), port)])),
        Some(Host::Ipv6(v6)) => Ok((None, vec![SocketAddr::new(v6.into(), port)])),
        Some(Host::Domain(domain)) => {
            let found = tokio::net::lookup_host((domain, port))
                .await
                .map_err(DestinationError::Unresolvable)?;
            Ok((Some(domain.to_owned()), found.collect()))
        }
        None => Err(DestinationError::NoAddress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(raw: &str) -> WebhookUrl {
        WebhookUrl::parse(raw).unwrap()
    }

    const STRICT: DestinationPolicy = DestinationPolicy {
        webhooks_allow_http: false,
        webhooks_allow_private_networks: false,
    };

    #[tokio::test]
    async fn internal_hosts_are_refused_unless_allowed() {
        for raw in [
            "https://127.0.0.1/hook",
            "https://[::1]/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.7/",
            "https://localhost:8443/",
            "https://[::ffff:192.168.0.1]/",
        ] {
            let refused = STRICT.check(&url(raw)).await;
            assert!(
                matches!(refused, Err(DestinationError::Internal(_))),
                "{raw}: {refused:?}"
            );
        }
        let open = DestinationPolicy {
            webhooks_allow_private_networks: true,
            ..STRICT
        };
        let allowed = open.check(&url("https://127.0.0.1:9/")).await.unwrap();
        assert_eq!(allowed.addresses, ["127.0.0.1:9".parse().unwrap()]);
    }

    #[tokio::test]
    async fn plain_http_is_refused_unless_allowed() {
        assert!(matches!(
            STRICT.check(&url("http://93.184.216.34/")).await,
            Err(DestinationError::PlainHttp)
        ));
        let http = DestinationPolicy {
            webhooks_allow_http: true,
            ..STRICT
        };
        assert!(http.check(&url("http://93.184.216.34/")).await.is_ok());
    }
}
