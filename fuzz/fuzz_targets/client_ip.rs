//! Any peer, trusted networks and `X-Forwarded-For` list: the client address is exactly what
//! a model of "rightmost untrusted" says, split into headers anywhere; it is the peer or
//! one of the entries, trusted only when everything was; entries added on the left never
//! move an untrusted answer; and raw header bytes never panic.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use arbitrary::Arbitrary;
use keyledger::{ForwardedForProblem, IpNet, MAX_FORWARDED_HOPS, TrustedProxies};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    V4([u8; 4]),
    V6([u16; 8]),
    Mapped([u8; 4]),
    /// In 10.0.0.0/24 or 2001:db8::/120, which `trust_near` trusts: hits are common.
    Near(u8, bool),
}

impl Addr {
    fn ip(self) -> IpAddr {
        match self {
            Addr::V4(b) => IpAddr::from(b),
            Addr::V6(s) => IpAddr::from(s),
            Addr::Mapped(b) => IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped()),
            Addr::Near(x, false) => IpAddr::from([10, 0, 0, x]),
            Addr::Near(x, true) => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(x)]),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Entry {
    Plain(Addr, u8),
    Port(Addr, u16, u8),
    Bracketed(Addr, u8),
    /// Never an address: written with a leading `g` and no comma.
    Garbage(String),
}

impl Entry {
    /// The address the entry names, as the caller should see it; `None` for garbage.
    fn ip(&self) -> Option<IpAddr> {
        let ip = match self {
            Entry::Plain(a, _) | Entry::Port(a, _, _) | Entry::Bracketed(a, _) => a.ip(),
            Entry::Garbage(_) => return None,
        };
        Some(canonical(ip))
    }

    fn text(&self) -> String {
        let pad = |p: u8, s: String| {
            let ws = |n: u8| (0..n % 3).map(|i| if i % 2 == 0 { ' ' } else { '\t' }).collect::<String>();
            format!("{}{s}{}", ws(p), ws(p >> 4))
        };
        match self {
            Entry::Plain(a, p) => pad(*p, a.ip().to_string()),
            Entry::Port(a, port, p) => match a.ip() {
                IpAddr::V4(v4) => pad(*p, format!("{v4}:{port}")),
                IpAddr::V6(v6) => pad(*p, format!("[{v6}]:{port}")),
            },
            Entry::Bracketed(a, p) => match a.ip() {
                IpAddr::V4(v4) => pad(*p, v4.to_string()),
                IpAddr::V6(v6) => pad(*p, format!("[{v6}]")),
            },
            Entry::Garbage(s) => format!("g{}", s.replace(',', ";")),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    peer: Addr,
    trusted: Vec<(Addr, u8)>,
    trust_near: bool,
    left: Vec<Entry>,
    right: Vec<Entry>,
    cuts: Vec<u8>,
    raw: Vec<Vec<u8>>,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// "Rightmost untrusted", on entries whose meaning is known without parsing.
fn model(p: &TrustedProxies, peer: IpAddr, entries: &[Entry]) -> Result<IpAddr, ForwardedForProblem> {
    let peer = canonical(peer);
    if !p.contains(peer) {
        return Ok(peer);
    }
    let mut leftmost = peer;
    for (walked, entry) in entries.iter().rev().enumerate() {
        if walked == MAX_FORWARDED_HOPS {
            return Err(ForwardedForProblem::TooManyHops);
        }
        let ip = entry.ip().ok_or(ForwardedForProblem::Malformed)?;
        if !p.contains(ip) {
            return Ok(ip);
        }
        leftmost = ip;
    }
    Ok(leftmost)
}

/// The entries as header values: comma-joined, a new header at each cut.
fn headers(entries: &[Entry], cuts: &[u8]) -> Vec<String> {
    let mut out = vec![String::new()];
    for (i, entry) in entries.iter().enumerate() {
        let last = out.last_mut().expect("never empty");
        if !last.is_empty() {
            last.push(',');
        }
        last.push_str(&entry.text());
        if cuts.contains(&(i as u8)) && i + 1 < entries.len() {
            out.push(String::new());
        }
    }
    if entries.is_empty() {
        out.clear();
    }
    out
}

fn ask(p: &TrustedProxies, peer: IpAddr, values: &[String]) -> Result<IpAddr, ForwardedForProblem> {
    p.client_ip(peer, values.iter().map(|v| v.as_bytes()))
}

fuzz_target!(|input: Input| {
    let mut nets: Vec<IpNet> = input
        .trusted
        .iter()
        .take(8)
        .filter_map(|&(a, len)| {
            let ip = a.ip();
            let max = if ip.is_ipv4() { 32 } else { 128 };
            IpNet::new(ip, len % (max + 1)).ok().map(|n| n.trunc())
        })
        .collect();
    if input.trust_near {
        nets.push("10.0.0.0/24".parse().expect("a network"));
        nets.push("2001:db8::/120".parse().expect("a network"));
    }
    let p = TrustedProxies::new(nets).expect("truncated networks are valid");
    let peer = input.peer.ip();

    let all: Vec<Entry> = input.left.iter().chain(&input.right).cloned().collect();
    let want = model(&p, peer, &all);
    let got = ask(&p, peer, &headers(&all, &input.cuts));
    assert_eq!(got, want);
    assert_eq!(ask(&p, peer, &headers(&all, &[])), want, "one header or several");

    if let Ok(ip) = got {
        let named: Vec<IpAddr> = all.iter().filter_map(Entry::ip).collect();
        assert!(ip == canonical(peer) || named.contains(&ip), "the peer or an entry");
        if p.contains(ip) {
            assert!(p.contains(peer), "trusted answer from an untrusted peer");
            assert!(
                all.iter().all(|e| e.ip().is_some_and(|ip| p.contains(ip))),
                "a trusted answer although an entry is not trusted"
            );
        }
    }

    // Once an untrusted answer is found on the right, nothing on the left matters.
    let right_only = ask(&p, peer, &headers(&input.right, &input.cuts));
    if let Ok(ip) = right_only {
        if !p.contains(ip) {
            assert_eq!(got, right_only, "entries on the left moved the answer");
            let mut raw_left: Vec<String> =
                input.raw.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect();
            raw_left.extend(headers(&input.right, &input.cuts));
            assert_eq!(ask(&p, peer, &raw_left), right_only, "raw headers on the left moved it");
        }
    }

    // Raw bytes: never a panic, and never past an untrusted peer.
    let raw = p.client_ip(peer, input.raw.iter().map(Vec::as_slice));
    if let Ok(ip) = raw {
        if ip != canonical(peer) {
            assert!(p.contains(canonical(peer)), "an untrusted peer is the answer");
        }
    }
});
