//! The client's address, used by the rate limits, the address lockout and
//! the events' `request_ip`: the TCP peer, unless the peer is one of
//! `TRUSTED_PROXIES`. Then the forwarding header (`Forwarded`, RFC 7239, or
//! else `X-Forwarded-For`) is read from the right, the nearest hop first,
//! and the first address that is not a trusted proxy is the client. Hops
//! left of it were written by the client and may be forged.

use std::net::IpAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, HttpRequest};
use ipnet::IpNet;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(ranges: Vec<IpNet>) -> Self {
        Self(ranges)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(&address))
    }

    /// The client behind `peer`. A hop that is no address (`unknown`, an
    /// obfuscated name) ends the walk at the last trusted proxy.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        for hop in forwarded_hops(headers).into_iter().rev() {
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

/// The hops of `Forwarded` (its `for=` parameters) or, without it, of
/// `X-Forwarded-For`, leftmost first; `None` for a hop that is no address.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = header_values(headers, header::FORWARDED.as_str());
    if !forwarded.is_empty() {
        return forwarded
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
        let proxies = TrustedProxies::new(trusted.iter().map(|r| r.parse().unwrap()).collect());
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
        assert_eq!(client(&trusted, "10.1.2.3", &forwarded), "2001:db8::1");
        let unknown = [("forwarded", "for=unknown, for=10.0.0.2")];
        assert_eq!(client(&trusted, "10.1.2.3", &unknown), "10.0.0.2");
        assert_eq!(client(&trusted, "::ffff:10.1.2.3", &[]), "10.1.2.3");
    }
}
