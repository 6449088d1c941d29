//! The client address that per-address limits apply to.
//!
//! It is the TCP peer, unless the peer is a configured trusted proxy: then it is the
//! right-most address of `X-Forwarded-For` that is not itself a trusted proxy. Entries left
//! of that were written by the client and prove nothing, so they are never used.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

/// Hops of `X-Forwarded-For` examined at most, right to left.
const MAX_HOPS: usize = 32;

/// Same address whether it arrives as IPv4 or IPv4-mapped IPv6.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:5`,
/// `[::1]:5`), which some proxies add.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

/// Parses the `trusted_proxies` setting; entries that are not addresses are returned as
/// errors for the caller to report.
pub(crate) fn parse_trusted(list: &[String]) -> (Vec<IpAddr>, Vec<String>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for s in list {
        match s.trim().parse::<IpAddr>() {
            Ok(ip) => ok.push(canonical(ip)),
            Err(_) => bad.push(s.clone()),
        }
    }
    (ok, bad)
}

/// The client address of a request from `peer` carrying `forwarded_for` (every
/// `X-Forwarded-For` header value in order; `None` for a value that is not text).
///
/// Anything unparsable stops the walk at the nearest address known good, so garbage can
/// only make requests count against the proxy's own address, never against one the sender
/// picked.
pub(crate) fn resolve<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = Option<&'a str>>,
    trusted: &[IpAddr],
) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(&peer) {
        return peer;
    }
    let values: Vec<Option<&str>> = forwarded_for.into_iter().collect();
    let hops = values
        .iter()
        .rev()
        .flat_map(|v| match v {
            Some(text) => text.rsplit(',').map(Some).collect::<Vec<_>>(),
            None => vec![None],
        })
        .take(MAX_HOPS);
    let mut client = peer;
    for hop in hops {
        let Some(ip) = hop.and_then(parse_hop) else {
            return client;
        };
        client = ip;
        if !trusted.contains(&ip) {
            return ip;
        }
    }
    client
}

/// The request's client address; `None` when the service runs without connection info
/// (the router used on its own, as in unit tests), where per-address limits do not apply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub(crate) Option<IpAddr>);

impl ClientIp {
    fn from_parts(parts: &Parts, trusted: &[IpAddr]) -> Self {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Self(None);
        };
        let xff = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().ok());
        Self(Some(resolve(peer.ip(), xff, trusted)))
    }
}

/// Router state that knows which peers are trusted proxies; the service's state
/// implements it, so this module needs nothing from the service.
pub(crate) trait TrustedProxies {
    /// The configured trusted proxies, already canonical.
    fn trusted_proxies(&self) -> &[IpAddr];
}

impl<S: TrustedProxies + Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts, state.trusted_proxies()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const PROXY: &str = "10.0.0.1";

    fn via_proxy(values: &[Option<&str>]) -> IpAddr {
        resolve(
            ip(PROXY),
            values.iter().copied(),
            &[ip(PROXY), ip("10.0.0.2")],
        )
    }

    #[test]
    fn untrusted_peers_are_taken_as_they_are() {
        let got = resolve(ip("203.0.113.9"), [Some("1.1.1.1")], &[ip(PROXY)]);
        assert_eq!(got, ip("203.0.113.9"));
        assert_eq!(
            resolve(ip("203.0.113.9"), [Some("1.1.1.1")], &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_peers_yield_the_right_most_untrusted_hop() {
        assert_eq!(via_proxy(&[Some("1.1.1.1")]), ip("1.1.1.1"));
        // The client prepended a fake address; the proxy appended the real one.
        assert_eq!(via_proxy(&[Some("6.6.6.6, 1.1.1.1")]), ip("1.1.1.1"));
        // Two trusted proxies in a row are skipped.
        assert_eq!(
            via_proxy(&[Some("6.6.6.6, 1.1.1.1, 10.0.0.2")]),
            ip("1.1.1.1")
        );
        // Several header lines read as one list, in order.
        assert_eq!(
            via_proxy(&[Some("6.6.6.6"), Some("1.1.1.1")]),
            ip("1.1.1.1")
        );
        // Ports and IPv4-mapped IPv6 are understood.
        assert_eq!(via_proxy(&[Some("1.1.1.1:4711")]), ip("1.1.1.1"));
        assert_eq!(via_proxy(&[Some("[2001:db8::1]:80")]), ip("2001:db8::1"));
        assert_eq!(via_proxy(&[Some("::ffff:1.1.1.1")]), ip("1.1.1.1"));
    }

    #[test]
    fn missing_or_garbage_headers_fall_back_to_a_known_address() {
        assert_eq!(via_proxy(&[]), ip(PROXY));
        assert_eq!(via_proxy(&[Some("")]), ip(PROXY));
        assert_eq!(via_proxy(&[Some("not an ip")]), ip(PROXY));
        assert_eq!(via_proxy(&[None]), ip(PROXY));
        // Garbage right of a trusted hop stops there, at the trusted hop.
        assert_eq!(via_proxy(&[Some("1.1.1.1, x, 10.0.0.2")]), ip("10.0.0.2"));
        // Garbage left of the client's address is never reached.
        assert_eq!(via_proxy(&[Some("%%%,,, 1.1.1.1")]), ip("1.1.1.1"));
        // Every hop trusted: the left-most trusted one.
        assert_eq!(via_proxy(&[Some("10.0.0.2")]), ip("10.0.0.2"));
        // A very long chain of trusted hops is cut off at a trusted address.
        let long = vec!["10.0.0.2"; 10_000].join(",");
        assert_eq!(
            via_proxy(&[Some(&format!("1.1.1.1,{long}"))]),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn trusted_list_parsing_reports_bad_entries() {
        let (ok, bad) = parse_trusted(&[
            "10.0.0.1".into(),
            " ::1 ".into(),
            "10.0.0.0/8".into(),
            "proxy.local".into(),
        ]);
        assert_eq!(ok, vec![ip("10.0.0.1"), ip("::1")]);
        assert_eq!(bad, vec!["10.0.0.0/8".to_string(), "proxy.local".into()]);
    }
}
