//! Where a webhook may not be delivered: addresses inside the service's own
//! network (server-side request forgery). Pure; resolving happens in the
//! application layer and the worker, which refuse a host if ANY of its
//! addresses is forbidden.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Loopback, private (RFC 1918, ULA `fc00::/7`), link-local (`169.254/16`
/// with the cloud metadata address, `fe80::/10`), shared (CGNAT
/// `100.64/10`), unspecified, broadcast, multicast, documentation and
/// reserved ranges, and the IPv4-mapped or -compatible forms of those.
pub fn is_forbidden_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(address: Ipv4Addr) -> bool {
    let [a, b, ..] = address.octets();
    address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_unspecified()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_documentation()
        || a == 0
        // 100.64.0.0/10: carrier-grade NAT.
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24: IETF protocol assignments.
        || (a == 192 && b == 0 && address.octets()[2] == 0)
        // 198.18.0.0/15: benchmarking.
        || (a == 198 && (18..20).contains(&b))
        // 240.0.0.0/4: reserved.
        || a >= 240
}

fn is_forbidden_v6(address: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(address) {
        return is_forbidden_v4(v4);
    }
    let first = address.segments()[0];
    address.is_loopback()
        || address.is_unspecified()
        || address.is_multicast()
        // fc00::/7: unique local.
        || (first & 0xfe00) == 0xfc00
        // fe80::/10: link-local; fec0::/10: deprecated site-local.
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // 2001:db8::/32: documentation.
        || (first == 0x2001 && address.segments()[1] == 0x0db8)
        // 64:ff9b:1::/48: local-use NAT64.
        || (first == 0x0064 && address.segments()[1] == 0xff9b && address.segments()[2] == 1)
}

/// The IPv4 address inside `::ffff:a.b.c.d` (mapped), `::a.b.c.d`
/// (compatible) and `64:ff9b::a.b.c.d` (NAT64).
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = address.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = address.segments();
    let tail = || {
        let [.., a, b, c, d] = address.octets();
        Ipv4Addr::new(a, b, c, d)
    };
    let compatible = segments[..6].iter().all(|s| *s == 0)
        && !address.is_loopback()
        && !address.is_unspecified();
    let nat64 =
        segments[0] == 0x0064 && segments[1] == 0xff9b && segments[2..6].iter().all(|s| *s == 0);
    (compatible || nat64).then(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(address: &str) -> bool {
        is_forbidden_address(address.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_forbidden() {
        let internal = [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.0.8",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "2001:db8::1",
        ];
        for address in internal {
            assert!(forbidden(address), "{address} must be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        let public = [
            "93.184.216.34",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
        ];
        for address in public {
            assert!(!forbidden(address), "{address} must be allowed");
        }
    }
}
