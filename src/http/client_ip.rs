//! Which address a request comes from: the connection's peer or, when that peer is a
//! trusted proxy, the rightmost `X-Forwarded-For` entry that is not a trusted proxy.
//!
//! Owns the parsing of `X-Forwarded-For` entries and the walk over them. It must never
//! answer with an entry that lies to the left of one it could not read or did not trust
//! to stop at: everything left of the first hop's own entry is written by the client.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::model::error::Error;
use crate::model::rules::canonical_net;
use crate::model::rules::parse_net;

/// The most `X-Forwarded-For` entries looked at for one request. Walking from the right
/// stops at the first untrusted entry, so only a chain of more trusted proxies than this
/// (or a trusted client padding the list) reaches it.
pub const MAX_FORWARDED_HOPS: usize = 64;

/// The networks whose connections are reverse proxies, trusted to append the address they
/// received a request from to `X-Forwarded-For`.
///
/// With none (the default), a request's client address is its connection's peer address
/// and `X-Forwarded-For` is ignored. IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`) are
/// matched, and answered, as the IPv4 address they carry; a mapped network is stored as
/// the IPv4 network it covers.
///
/// # Example
/// ```
/// use keyledger::TrustedProxies;
/// let proxies = TrustedProxies::parse(["10.0.0.0/8", "::1"])?;
/// let peer = "10.0.0.2".parse()?;
/// // The client wrote 203.0.113.66; the proxy appended the address it saw, 198.51.100.7.
/// let header: &[u8] = b"203.0.113.66, 198.51.100.7";
/// assert_eq!(proxies.client_ip(peer, [header]), Ok("198.51.100.7".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Box<[IpNet]>,
}

/// Why no client address could be read from `X-Forwarded-For`.
///
/// Both refuse the request rather than guess: skipping an entry would move the answer
/// left, to text the client may have written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedForProblem {
    /// An entry reached from the right, before any untrusted address, is not an address:
    /// empty, `unknown`, an obfuscated name, not ASCII, or anything else that does not
    /// parse as an IP address with an optional port.
    Malformed,
    /// More than [`MAX_FORWARDED_HOPS`] entries would have to be looked at.
    TooManyHops,
}

impl fmt::Display for ForwardedForProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardedForProblem::Malformed => {
                f.write_str("an X-Forwarded-For entry after the trusted proxies is not an IP address")
            }
            ForwardedForProblem::TooManyHops => write!(
                f,
                "more than {MAX_FORWARDED_HOPS} X-Forwarded-For entries are trusted proxies"
            ),
        }
    }
}

impl std::error::Error for ForwardedForProblem {}

impl TrustedProxies {
    /// No trusted proxies: the client address is always the connection's peer.
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts these networks.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a network with host bits set (`10.0.0.1/8`).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Result<Self, Error> {
        let nets = nets.into_iter().map(canonical_net).collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets })
    }

    /// Parses networks (`10.0.0.0/8`) and single addresses (`::1`), as whitelist entries
    /// are parsed.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the first entry that is not an address or network.
    pub fn parse<I>(nets: I) -> Result<Self, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let nets = nets
            .into_iter()
            .map(|s| parse_net(s.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets })
    }

    /// The trusted networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether no network is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` lies in a trusted network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The address a request comes from, given its connection's `peer` address and the
    /// values of its `X-Forwarded-For` headers, in the order they arrived.
    ///
    /// - With no trusted proxies, or a peer that is not one, the answer is the peer.
    /// - Otherwise the headers are read as one comma-separated list and walked from the
    ///   right, past the entries inside trusted networks; the first entry that is not
    ///   trusted is the answer ("rightmost untrusted"). The leftmost entries are whatever
    ///   the client sent, so they count only when every entry to their right is trusted.
    /// - If every entry is trusted, the answer is the leftmost entry, as nginx's
    ///   `real_ip_recursive` and Rails answer; with no entries at all, the peer. Either way
    ///   an address inside a trusted network, which a key admits only if its whitelist
    ///   covers that network.
    ///
    /// An entry is an IPv4 or IPv6 address, optionally with a port (`192.0.2.1:5678`,
    /// `[2001:db8::1]:443`, also `[2001:db8::1]`), with optional spaces or tabs around it.
    /// An IPv4-mapped IPv6 address is answered as the IPv4 address it carries.
    ///
    /// # Errors
    /// [`ForwardedForProblem::Malformed`] if the walk reaches an entry that is not an
    /// address before an untrusted one: it is not skipped, since that would hand the choice
    /// to whoever wrote the entries further left. [`ForwardedForProblem::TooManyHops`] if
    /// more than [`MAX_FORWARDED_HOPS`] entries would be looked at. Entries left of the
    /// answer are never read.
    pub fn client_ip<'a, I>(&self, peer: IpAddr, forwarded_for: I) -> Result<IpAddr, ForwardedForProblem>
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: DoubleEndedIterator,
    {
        let peer = canonical_ip(peer);
        if !self.contains(peer) {
            return Ok(peer);
        }
        let mut leftmost = peer;
        let mut walked = 0;
        for value in forwarded_for.into_iter().rev() {
            for entry in value.rsplit(|&b| b == b',') {
                walked += 1;
                if walked > MAX_FORWARDED_HOPS {
                    return Err(ForwardedForProblem::TooManyHops);
                }
                let ip = parse_entry(entry).ok_or(ForwardedForProblem::Malformed)?;
                if !self.contains(ip) {
                    return Ok(ip);
                }
                leftmost = ip;
            }
        }
        Ok(leftmost)
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.nets.iter().map(ToString::to_string))
            .finish()
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries; any other unchanged.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: an address with an optional port and optional spaces or
/// tabs around it, canonical; `None` for anything else.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical_ip(ip));
    }
    let ip = if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        IpAddr::V6(host.parse::<Ipv6Addr>().ok()?)
    } else {
        let (host, port) = entry.split_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
    };
    Some(canonical_ip(ip))
}

fn is_port(s: &str) -> bool {
    (1..=5).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    fn walk(p: &TrustedProxies, peer: &str, headers: &[&str]) -> Result<IpAddr, ForwardedForProblem> {
        p.client_ip(ip(peer), headers.iter().map(|h| h.as_bytes()))
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        let none = TrustedProxies::none();
        assert_eq!(walk(&none, "192.0.2.1", &["203.0.113.9"]), Ok(ip("192.0.2.1")));
        assert_eq!(walk(&none, "192.0.2.1", &["garbage"]), Ok(ip("192.0.2.1")));
        assert_eq!(walk(&none, "::ffff:192.0.2.1", &[]), Ok(ip("192.0.2.1")));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_even_if_it_forwards() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            walk(&p, "192.0.2.1", &["10.1.1.1, 203.0.113.9"]),
            Ok(ip("192.0.2.1"))
        );
    }

    #[test]
    fn the_rightmost_untrusted_entry_wins_behind_two_proxies() {
        let p = proxies(&["10.0.0.0/8", "172.16.0.0/12"]);
        // client 198.51.100.7 -> proxy 172.16.0.5 -> proxy 10.0.0.2 -> us; it spoofed the
        // leftmost entry.
        let headers = ["1.1.1.1, 198.51.100.7, 172.16.0.5"];
        assert_eq!(walk(&p, "10.0.0.2", &headers), Ok(ip("198.51.100.7")));
        // "Rightmost" alone would answer 172.16.0.5, the first proxy.
    }

    #[test]
    fn repeated_headers_are_one_list_in_arrival_order() {
        let p = proxies(&["10.0.0.0/8"]);
        let split = ["203.0.113.1, 198.51.100.7", "10.0.0.9", "10.0.0.8"];
        assert_eq!(walk(&p, "10.0.0.1", &split), Ok(ip("198.51.100.7")));
        let left_header_only = ["198.51.100.7", "10.0.0.8"];
        assert_eq!(walk(&p, "10.0.0.1", &left_header_only), Ok(ip("198.51.100.7")));
    }

    #[test]
    fn everything_trusted_answers_the_leftmost_entry_or_the_peer() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(walk(&p, "10.0.0.1", &["10.0.0.3, 10.0.0.2"]), Ok(ip("10.0.0.3")));
        assert_eq!(walk(&p, "10.0.0.1", &[]), Ok(ip("10.0.0.1")));
    }

    #[test]
    fn a_malformed_entry_on_the_walk_refuses_rather_than_skipping_left() {
        let p = proxies(&["10.0.0.0/8"]);
        for bad in [
            "198.51.100.7, unknown",
            "198.51.100.7, _hidden",
            "198.51.100.7, ",
            "198.51.100.7,,10.0.0.2",
            "",
            "198.51.100.7, 10.0.0.2:99999",
            "198.51.100.7, fe80::1%eth0",
            "198.51.100.7, 2001:db8::1]:443",
            "198.51.100.7, [10.0.0.2]:80",
            "198.51.100.7, 010.0.0.2",
            "198.51.100.7, \"[2001:db8::1]\"",
        ] {
            assert_eq!(
                walk(&p, "10.0.0.1", &[bad]),
                Err(ForwardedForProblem::Malformed),
                "{bad:?}"
            );
        }
        let not_utf8: &[u8] = b"198.51.100.7, 10.0.0.\xff";
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), [not_utf8]),
            Err(ForwardedForProblem::Malformed)
        );
    }

    #[test]
    fn garbage_left_of_the_answer_is_never_read() {
        let p = proxies(&["10.0.0.0/8"]);
        let headers = ["\u{7f}garbage, unknown,, 198.51.100.7 , 10.0.0.2"];
        assert_eq!(walk(&p, "10.0.0.1", &headers), Ok(ip("198.51.100.7")));
        let mut many = "1.1.1.1, ".repeat(10_000);
        many.push_str("198.51.100.7");
        assert_eq!(walk(&p, "10.0.0.1", &[many.as_str()]), Ok(ip("198.51.100.7")));
    }

    #[test]
    fn ports_brackets_and_whitespace_are_accepted() {
        let p = proxies(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        for (entry, want) in [
            ("198.51.100.7:5678", "198.51.100.7"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            (" \t198.51.100.7\t ", "198.51.100.7"),
            ("[::ffff:198.51.100.7]:80", "198.51.100.7"),
            // Without brackets a trailing `:443` is part of the IPv6 address.
            ("2001:db8::1:443", "2001:db8::1:443"),
        ] {
            let header = format!("{entry}, [2001:db8:ffff::2]:8443, 10.0.0.2:1234");
            assert_eq!(walk(&p, "10.0.0.1", &[&header]), Ok(ip(want)), "{entry}");
        }
    }

    #[test]
    fn mapped_ipv4_is_trusted_and_answered_as_ipv4() {
        let p = proxies(&["10.0.0.0/8", "::1"]);
        assert!(p.contains(ip("::ffff:10.1.2.3")));
        assert_eq!(
            walk(&p, "::ffff:10.0.0.1", &["::ffff:198.51.100.7, ::ffff:10.0.0.2"]),
            Ok(ip("198.51.100.7"))
        );
        assert_eq!(walk(&p, "::1", &["2001:db8::7"]), Ok(ip("2001:db8::7")));
        let mapped_net = TrustedProxies::parse(["::ffff:10.0.0.0/104"]).unwrap();
        assert_eq!(mapped_net.nets(), proxies(&["10.0.0.0/8"]).nets());
        assert_eq!(
            walk(&mapped_net, "10.0.0.1", &["198.51.100.7"]),
            Ok(ip("198.51.100.7"))
        );
    }

    #[test]
    fn the_walk_stops_after_the_hop_limit() {
        let p = proxies(&["10.0.0.0/8"]);
        let trusted_hops = |n: usize| vec!["10.0.0.2"; n].join(",");
        let at_limit = format!("198.51.100.7,{}", trusted_hops(MAX_FORWARDED_HOPS - 1));
        assert_eq!(walk(&p, "10.0.0.1", &[&at_limit]), Ok(ip("198.51.100.7")));
        let past = format!("198.51.100.7,{}", trusted_hops(MAX_FORWARDED_HOPS));
        assert_eq!(
            walk(&p, "10.0.0.1", &[&past]),
            Err(ForwardedForProblem::TooManyHops)
        );
        let split: Vec<&str> = vec!["10.0.0.2"; MAX_FORWARDED_HOPS + 1];
        assert_eq!(
            walk(&p, "10.0.0.1", &split),
            Err(ForwardedForProblem::TooManyHops)
        );
    }

    #[test]
    fn bad_networks_are_invalid_input() {
        for bad in ["10.0.0.0/33", "10.0.0.1/8", "proxy", ""] {
            assert!(
                matches!(TrustedProxies::parse([bad]), Err(Error::InvalidInput { .. })),
                "{bad:?}"
            );
        }
        let host_bits = "10.0.0.1/8".parse::<IpNet>().unwrap();
        assert!(matches!(
            TrustedProxies::new([host_bits]),
            Err(Error::InvalidInput { .. })
        ));
    }

    /// Addresses of both families, mapped IPv4 too, many of them inside the trusted
    /// networks of the properties below (10.0.0.0/8 and 2001:db8::/112).
    fn any_ip() -> impl Strategy<Value = IpAddr> {
        let mapped = |v4: Ipv4Addr| IpAddr::V6(v4.to_ipv6_mapped());
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<u8>().prop_map(|x| IpAddr::from([10, 0, 0, x])),
            any::<u8>().prop_map(move |x| mapped(Ipv4Addr::new(10, 0, 0, x))),
            any::<[u8; 4]>().prop_map(move |b| mapped(Ipv4Addr::from(b))),
            (0u16..4, any::<u16>()).prop_map(|(a, b)| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, a, b])),
        ]
    }

    /// How an address may be written in the header.
    fn written(ip: IpAddr, style: u8) -> String {
        match (ip, style % 3) {
            (IpAddr::V4(v4), 1) => format!("{v4}:{}", 1000 + u16::from(style)),
            (IpAddr::V6(v6), 1) => format!("[{v6}]:{}", 1000 + u16::from(style)),
            (IpAddr::V6(v6), 2) => format!(" [{v6}]\t"),
            (ip, _) => format!(" {ip} "),
        }
    }

    proptest! {
        #[test]
        fn the_answer_is_the_rightmost_untrusted_entry_or_a_trusted_fallback(
            peer in any_ip(),
            entries in proptest::collection::vec((any_ip(), any::<u8>()), 0..8),
            cut in any::<usize>(),
        ) {
            // The whole of 10/8 and one /112 of IPv6, so both families hit and miss.
            let p = proxies(&["10.0.0.0/8", "2001:db8::/112"]);
            let texts: Vec<String> = entries.iter().map(|&(ip, style)| written(ip, style)).collect();
            let joined = texts.join(",");
            // The same list split into two headers at an entry boundary.
            let at = if texts.is_empty() { 0 } else { cut % texts.len() };
            let (left, right) = (texts[..at].join(","), texts[at..].join(","));
            let split: Vec<&str> = [left.as_str(), right.as_str()].into_iter().filter(|s| !s.is_empty()).collect();
            let one: Vec<&str> = if entries.is_empty() { vec![] } else { vec![&joined] };

            let canon: Vec<IpAddr> = entries.iter().map(|&(ip, _)| canonical_ip(ip)).collect();
            let want = if !p.contains(peer) {
                canonical_ip(peer)
            } else {
                canon.iter().rev().find(|&&ip| !p.contains(ip)).or(canon.first()).copied()
                    .unwrap_or(canonical_ip(peer))
            };
            prop_assert_eq!(p.client_ip(peer, one.iter().map(|s| s.as_bytes())), Ok(want));
            prop_assert_eq!(p.client_ip(peer, split.iter().map(|s| s.as_bytes())), Ok(want));
        }

        #[test]
        fn prepending_entries_never_moves_an_untrusted_answer(
            peer in any_ip(),
            right in proptest::collection::vec((any_ip(), any::<u8>()), 1..6),
            prefix in "[ -~]{0,40}",
        ) {
            let p = proxies(&["10.0.0.0/8", "2001:db8::/112"]);
            let right = right.iter().map(|&(ip, style)| written(ip, style)).collect::<Vec<_>>().join(",");
            let before = p.client_ip(peer, [right.as_bytes()]);
            if let Ok(answer) = before && !p.contains(answer) {
                let longer = format!("{prefix},{right}");
                prop_assert_eq!(p.client_ip(peer, [longer.as_bytes()]), before);
                prop_assert_eq!(p.client_ip(peer, [prefix.as_bytes(), right.as_bytes()]), before);
            }
        }
    }
}
