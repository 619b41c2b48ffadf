//! The client's address, used by the rate limits, the address lockout and
//! the events' `request_ip`: the TCP peer, unless the peer is one of
//! `TRUSTED_PROXIES`. Then the one forwarding header the operator names
//! (`CLIENT_ADDRESS_HEADER`: `X-Forwarded-For`, the default, or `Forwarded`,
//! RFC 7239) is read from the right, the nearest hop first, and the first
//! address that is not a trusted proxy is the client. Hops left of it were
//! written by the client and may be forged. The other header is never read:
//! a proxy overwrites the header it sets, not the one it does not know, so
//! a client could otherwise name any address it likes.

use std::net::IpAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, HttpRequest};
use ipnet::IpNet;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The header a trusted proxy names the client in; the only one read.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAddressHeader {
    /// `X-Forwarded-For` (what nginx, HAProxy and most load balancers set).
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239), its `for=` parameters.
    Forwarded,
}

#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    ranges: Vec<IpNet>,
    header: ClientAddressHeader,
}

impl TrustedProxies {
    pub fn new(ranges: Vec<IpNet>, header: ClientAddressHeader) -> Self {
        Self { ranges, header }
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.ranges.iter().any(|range| range.contains(&address))
    }

    /// The client behind `peer`. A hop that is no address (`unknown`, an
    /// obfuscated name) ends the walk at the last trusted proxy.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        for hop in forwarded_hops(self.header, headers).into_iter().rev() {
            let Some(address) = hop else {
                return client;
            };
            client = address.to_canonical();
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// The hops of `header` (of `Forwarded`, its `for=` parameters), leftmost
/// first; `None` for a hop that is no address.
fn forwarded_hops(header: ClientAddressHeader, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    if header == ClientAddressHeader::Forwarded {
        return header_values(headers, header::FORWARDED.as_str())
            .iter()
            .flat_map(|value| value.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, node)| node_address(node))
            })
            .collect();
    }
    header_values(headers, X_FORWARDED_FOR)
        .iter()
        .flat_map(|value| value.split(','))
        .map(node_address)
        .collect()
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .filter_map(|value| value.to_str().ok())
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(address) = node.parse() {
        return Some(address);
    }
    if let Some(bracketed) = node.strip_prefix('[') {
        return bracketed.split(']').next()?.parse().ok();
    }
    let (host, _port) = node.rsplit_once(':')?;
    host.parse().ok()
}

/// The client's address, in the request's extensions.
#[derive(Clone, Copy, Debug)]
struct ClientAddress(IpAddr);

/// Resolves the client's address once per request, before anything uses it.
pub async fn resolve(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if let Some(peer) = req.peer_addr() {
        let client = match req.app_data::<web::Data<TrustedProxies>>() {
            Some(proxies) => proxies.client_of(peer.ip(), req.headers()),
            None => peer.ip(),
        };
        req.extensions_mut().insert(ClientAddress(client));
    }
    next.call(req).await
}

/// The address [`resolve`] found (the peer's where it did not run).
pub fn client_address(req: &HttpRequest) -> Option<IpAddr> {
    let resolved = req
        .extensions()
        .get::<ClientAddress>()
        .map(|client| client.0);
    resolved.or_else(|| req.peer_addr().map(|peer| peer.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn client(trusted: &[&str], peer: &str, headers: &[(&'static str, &str)]) -> String {
        client_by(ClientAddressHeader::XForwardedFor, trusted, peer, headers)
    }

    fn forwarded_client(trusted: &[&str], peer: &str, headers: &[(&'static str, &str)]) -> String {
        client_by(ClientAddressHeader::Forwarded, trusted, peer, headers)
    }

    fn client_by(
        header: ClientAddressHeader,
        trusted: &[&str],
        peer: &str,
        headers: &[(&'static str, &str)],
    ) -> String {
        let proxies =
            TrustedProxies::new(trusted.iter().map(|r| r.parse().unwrap()).collect(), header);
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                header::HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        proxies.client_of(peer.parse().unwrap(), &map).to_string()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let spoofed = [("x-forwarded-for", "203.0.113.9")];
        assert_eq!(client(&[], "198.51.100.7", &spoofed), "198.51.100.7");
        assert_eq!(
            client(&["10.0.0.0/8"], "198.51.100.7", &spoofed),
            "198.51.100.7"
        );
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let trusted = ["10.0.0.0/8", "192.168.1.1/32"];
        let chain = [("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.2")];
        assert_eq!(client(&trusted, "192.168.1.1", &chain), "203.0.113.9");
        let forwarded = [(
            "forwarded",
            r#"for=1.1.1.1, for="[2001:db8::1]:4711";proto=https, for=10.0.0.2:80"#,
        )];
        assert_eq!(
            forwarded_client(&trusted, "10.1.2.3", &forwarded),
            "2001:db8::1"
        );
        let unknown = [("forwarded", "for=unknown, for=10.0.0.2")];
        assert_eq!(forwarded_client(&trusted, "10.1.2.3", &unknown), "10.0.0.2");
        assert_eq!(client(&trusted, "::ffff:10.1.2.3", &[]), "10.1.2.3");
    }

    #[test]
    fn only_the_header_the_operator_names_is_read() {
        let trusted = ["10.0.0.0/8"];
        // The proxy set X-Forwarded-For; the client added a Forwarded of its own.
        let both = [
            ("forwarded", "for=192.0.2.200"),
            ("x-forwarded-for", "203.0.113.9"),
        ];
        assert_eq!(client(&trusted, "10.0.0.1", &both), "203.0.113.9");
        let only_forwarded = [("forwarded", "for=192.0.2.200")];
        assert_eq!(client(&trusted, "10.0.0.1", &only_forwarded), "10.0.0.1");
        // The proxy set Forwarded; the client added an X-Forwarded-For.
        let both = [
            ("forwarded", "for=203.0.113.9"),
            ("x-forwarded-for", "192.0.2.200"),
        ];
        assert_eq!(forwarded_client(&trusted, "10.0.0.1", &both), "203.0.113.9");
        let only_xff = [("x-forwarded-for", "192.0.2.200")];
        assert_eq!(
            forwarded_client(&trusted, "10.0.0.1", &only_xff),
            "10.0.0.1"
        );
    }
}
