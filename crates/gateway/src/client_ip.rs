//! The client's address behind a load balancer. Behind one, every connection comes from the
//! balancer, and address-based linking and rotation signals would see one address for
//! everyone. The balancer says who the client was in `Forwarded` (RFC 7239) or
//! `X-Forwarded-For`, but a client can send those headers too, so they are read only when the
//! connection comes from a configured trusted proxy (`trusted_proxies`), and then from the
//! right: each trusted hop appends the address it received from, so the right-most address
//! that is not itself a trusted proxy is the first one no trusted party can vouch for past, and
//! anything to its left is whatever the client claimed.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The address calls are attributed to: the TCP peer, or, when the peer is a trusted proxy,
/// the right-most forwarded address that is not a trusted proxy (`Forwarded` when present,
/// else `X-Forwarded-For`; every instance of the header, in order). A hop that does not parse
/// (`unknown`, an obfuscated name) ends the walk at the last trusted hop.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| is_trusted(ip, trusted);
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = forwarded_hops(headers);
    let mut last = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = hop else { return last };
        if !is_trusted(ip) {
            return *ip;
        }
        last = *ip;
    }
    last
}

/// Whether a request names its client in `Forwarded` / `X-Forwarded-For` that this gateway
/// ignores because its peer is not a trusted proxy, while the peer is an address of the
/// operator's own network (loopback, private, link-local): what a load balancer or sidecar in
/// front of the gateway looks like before `trusted_proxies` names it. Left so, every client
/// is recorded as that one address, address-based linking joins the first accounts that share
/// it while it is still rare, and rotation is never seen. (A client on a private network
/// connecting directly may send such a header too; the warning this feeds says so.)
pub fn ignored_forwarding(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> bool {
    // An IPv4 peer on a dual-stack socket arrives IPv4-mapped: judged as the IPv4 it is.
    let internal = match peer.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
    };
    internal
        && !is_trusted(&peer, trusted)
        && (headers.contains_key("forwarded") || headers.contains_key("x-forwarded-for"))
}

/// Whether `ip` is one of the configured trusted proxies.
fn is_trusted(ip: &IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(ip))
}

/// The forwarded-for hops, left to right; `None` for one that is not an address.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_node(v.trim().trim_matches('"')))
                })
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|hop| parse_node(hop.trim()))
        .collect()
}

/// An address as forwarding headers write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, _) = rest.split_once(']')?;
        return inner.parse().ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn a_clients_own_header_is_never_trusted() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        // No trusted proxies: the peer.
        assert_eq!(client_ip(ip("198.51.100.7"), &h, &[]), ip("198.51.100.7"));
        // A peer that is not a trusted proxy: the peer, whatever it claims.
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("198.51.100.7"), &h, &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        // The client forged the left-most entry; the balancer appended what it saw.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3")]);
        assert_eq!(client_ip(ip("10.9.9.9"), &h, &trusted), ip("203.0.113.9"));
        // Several header lines read as one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(client_ip(ip("10.9.9.9"), &h, &trusted), ip("203.0.113.9"));
        // RFC 7239, with ports, quotes and IPv6.
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1, for=10.2.2.2:80",
        )]);
        assert_eq!(
            client_ip(ip("10.9.9.9"), &h, &trusted),
            ip("2001:db8:cafe::17")
        );
        // Forwarded wins over X-Forwarded-For when both are there.
        let h = headers(&[
            ("forwarded", "for=203.0.113.1"),
            ("x-forwarded-for", "203.0.113.2"),
        ]);
        assert_eq!(client_ip(ip("10.9.9.9"), &h, &trusted), ip("203.0.113.1"));
    }

    #[test]
    fn a_proxy_of_our_own_whose_forwarding_is_ignored_is_noticed() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        // A balancer on the operator's network, not yet trusted: its header is ignored.
        assert!(ignored_forwarding(ip("10.0.0.5"), &h, &[]));
        assert!(ignored_forwarding(ip("127.0.0.1"), &h, &[]));
        assert!(ignored_forwarding(ip("fd00::1"), &h, &[]));
        assert!(ignored_forwarding(ip("::ffff:10.0.0.5"), &h, &[]));
        let rfc = headers(&[("forwarded", "for=203.0.113.9")]);
        assert!(ignored_forwarding(ip("192.168.1.2"), &rfc, &[]));
        // Trusted: its header is read, nothing to say.
        assert!(!ignored_forwarding(
            ip("10.0.0.5"),
            &h,
            &nets(&["10.0.0.0/8"])
        ));
        // A client on the internet claiming to forward: it is the client, as it should be.
        assert!(!ignored_forwarding(ip("198.51.100.7"), &h, &[]));
        // A peer of our own network with no such header: a client inside it.
        assert!(!ignored_forwarding(ip("10.0.0.5"), &HeaderMap::new(), &[]));
    }

    #[test]
    fn an_unreadable_hop_stops_the_walk_at_the_last_trusted_one() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.9, unknown, 10.1.2.3")]);
        assert_eq!(client_ip(ip("10.9.9.9"), &h, &trusted), ip("10.1.2.3"));
        // No header at all: the proxy itself.
        assert_eq!(
            client_ip(ip("10.9.9.9"), &HeaderMap::new(), &trusted),
            ip("10.9.9.9")
        );
    }
}
