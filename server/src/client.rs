//! Who the client is: the peer's address, or behind trusted reverse proxies
//! the address they report in `X-Forwarded-For`.
//!
//! A forwarded header is only as true as whoever wrote it: any client can
//! send `X-Forwarded-For: 1.2.3.4`. So it is read only when the peer is a
//! proxy the operator trusts (`--trust-proxy CIDR`), and then from the right:
//! each trusted proxy appends the address it received the request from, so
//! the rightmost address that is not a trusted proxy is the first one that no
//! trusted party vouches past, the client. Anything left of it is the
//! client's own claim and is ignored.

use std::net::{IpAddr, Ipv6Addr};

use hyper::header::HeaderMap;
use ipnet::IpNet;

/// What the per-client limits (connections, sessions created, "email
/// already used" answers) count a client as: its IPv4 address, or the /64
/// of its IPv6 one. A host is given a /64 at least, and picks any address
/// in it: counted per address, one host would have 2^64 limits.
pub fn limited_as(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

/// The operator's trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies { nets }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies (an IPv4-mapped IPv6 peer
    /// counts as its IPv4 address).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        // Several X-Forwarded-For lines are one list, in order (RFC 9110
        // 5.3); walk it from the right.
        let mut client = peer;
        let lines: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        for line in lines.iter().rev() {
            // Split as bytes: a hop that is not UTF-8 is garbage like any
            // other, and the hops right of it (the ones the trusted
            // proxies appended) still count. (The whole line was given up,
            // which left the client in the proxy's place.)
            for hop in line.rsplit(|b| *b == b',') {
                match std::str::from_utf8(hop).ok().and_then(parse_hop) {
                    Some(ip) if self.trusts(ip) => client = ip,
                    Some(ip) => return ip,
                    // Garbage where an address should be: nothing further
                    // left can be trusted; the last trusted hop stands.
                    None => return client,
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port or in
/// brackets (`203.0.113.5:4711`, `[2001:db8::1]:443`), as proxies write them.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    // A link-local IPv6 address's zone (`fe80::1%eth0`) names the proxy's
    // interface, not another address.
    let hop = match hop.split_once('%') {
        Some((address, _zone)) if !hop.starts_with('[') => address,
        _ => hop,
    };
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_ipv6_client_is_limited_as_its_64_and_an_ipv4_one_as_itself() {
        for (client, limited) in [
            ("2001:db8:1:2::1", "2001:db8:1:2::"),
            ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"),
            ("2001:db8:1:3::1", "2001:db8:1:3::"),
            ("::1", "::"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
            ("203.0.113.9", "203.0.113.9"),
        ] {
            assert_eq!(limited_as(ip(client)), ip(limited), "{client}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            trusted.client_ip(ip("198.51.100.7"), &headers),
            ip("198.51.100.7")
        );
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.0.0.1"), &headers),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "192.0.2.1/32"]);
        // The client claimed 1.1.1.1; its real address 203.0.113.9 was
        // appended by 192.0.2.1, which 10.0.0.5 then appended.
        let headers = forwarded(&["1.1.1.1, 203.0.113.9", "192.0.2.1"]);
        assert_eq!(
            trusted.client_ip(ip("10.0.0.5"), &headers),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_read() {
        let trusted = proxies(&["127.0.0.1/32"]);
        let headers = forwarded(&["[2001:db8::7]:443"]);
        assert_eq!(
            trusted.client_ip(ip("::ffff:127.0.0.1"), &headers),
            ip("2001:db8::7")
        );
        let headers = forwarded(&["203.0.113.9:4711"]);
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), &headers),
            ip("203.0.113.9")
        );
    }

    /// A byte that is not UTF-8 makes its hop garbage, not the line: the
    /// hop the trusted proxy appended right of it is the client.
    #[test]
    fn a_hop_that_is_not_utf_8_leaves_the_hops_right_of_it() {
        let trusted = proxies(&["127.0.0.1/32"]);
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff, 203.0.113.1").unwrap(),
        );
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), &headers),
            ip("203.0.113.1")
        );
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"198.51.100.4\xfe").unwrap(),
        );
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), &headers),
            ip("127.0.0.1")
        );
        // A zone names the proxy's interface.
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), &forwarded(&["fe80::1%eth0"])),
            ip("fe80::1")
        );
    }

    #[test]
    fn garbage_or_only_proxies_leave_the_last_trusted_hop() {
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            trusted.client_ip(ip("10.0.0.5"), &forwarded(&["not-an-ip, 10.0.0.9"])),
            ip("10.0.0.9")
        );
        assert_eq!(
            trusted.client_ip(ip("10.0.0.5"), &forwarded(&["10.1.1.1"])),
            ip("10.1.1.1")
        );
        assert_eq!(
            trusted.client_ip(ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5")
        );
    }
}
