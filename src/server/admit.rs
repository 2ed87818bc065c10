//! Who may hold a connection: at most so many per client (an IPv6 client counted by its
//! /64, which one host usually owns whole), and a share of the slots kept for the trusted
//! proxies, so that clients hoarding idle or trickling connections cannot keep the
//! proxy's `/auth` requests out.
//!
//! Knows peer addresses, never requests: it decides as a connection is accepted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::http::client_ip::TrustedProxies;

/// The connection limits, as `Server` settles them.
#[derive(Debug, Clone)]
pub(super) struct Limits {
    /// Connections open at once, in all.
    pub(super) total: usize,
    /// Connections one client (not a trusted proxy) may hold at once.
    pub(super) per_client: usize,
    /// Slots only trusted proxies may take; the other clients share the rest.
    pub(super) proxy_reserve: usize,
}

/// The connections open now, by kind of peer.
pub(super) struct Admission {
    proxies: TrustedProxies,
    per_client: usize,
    /// The slots clients other than the trusted proxies may hold between them.
    shared: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    /// Connections held by clients other than the trusted proxies.
    clients: usize,
    by_client: HashMap<u128, usize>,
}

/// A connection admitted; dropping it (the connection closed) frees its place.
pub(super) struct Admitted {
    admission: Arc<Admission>,
    /// The client it counts against; `None` for a trusted proxy.
    client: Option<u128>,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turned {
    /// This client already holds its share.
    ClientFull,
    /// The slots not kept for the proxies are all held.
    SharedFull,
}

/// One client, for counting: an IPv4 address (IPv4-mapped IPv6 counts as IPv4), or an
/// IPv6 address's /64 prefix.
fn client_of(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        // A /64 is one network; the top bit set keeps it apart from every IPv4 client.
        IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 127),
    }
}

impl Admission {
    pub(super) fn new(limits: &Limits, proxies: TrustedProxies) -> Arc<Self> {
        Arc::new(Admission {
            proxies,
            per_client: limits.per_client.max(1),
            shared: limits.total.saturating_sub(limits.proxy_reserve).max(1),
            open: Mutex::new(Open::default()),
        })
    }

    /// Admits a connection from `peer`, or says why not. A trusted proxy is always
    /// admitted (the caller holds one of the total slots already); any other client only
    /// within its own share and the shared slots.
    pub(super) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Turned> {
        if self.proxies.contains(peer) {
            return Ok(Admitted {
                admission: Arc::clone(self),
                client: None,
            });
        }
        let client = client_of(peer);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.clients >= self.shared {
            return Err(Turned::SharedFull);
        }
        let held = open.by_client.entry(client).or_insert(0);
        if *held >= self.per_client {
            return Err(Turned::ClientFull);
        }
        *held += 1;
        open.clients += 1;
        Ok(Admitted {
            admission: Arc::clone(self),
            client: Some(client),
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Some(client) = self.client else { return };
        let mut open = self.admission.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.clients = open.clients.saturating_sub(1);
        if let Some(held) = open.by_client.get_mut(&client) {
            *held -= 1;
            if *held == 0 {
                open.by_client.remove(&client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: usize, per_client: usize, proxy_reserve: usize) -> Arc<Admission> {
        let limits = Limits {
            total,
            per_client,
            proxy_reserve,
        };
        Admission::new(&limits, TrustedProxies::parse(["10.0.0.1"]).unwrap())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_it_back_as_connections_close() {
        let a = admission(100, 2, 0);
        let first = a.admit(ip("192.0.2.1")).unwrap();
        let _second = a.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(a.admit(ip("192.0.2.1")).err(), Some(Turned::ClientFull));
        // IPv4-mapped IPv6 is the same client.
        assert_eq!(a.admit(ip("::ffff:192.0.2.1")).err(), Some(Turned::ClientFull));
        assert!(a.admit(ip("192.0.2.2")).is_ok());
        drop(first);
        assert!(a.admit(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_slash_64() {
        let a = admission(100, 1, 0);
        let _held = a.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(a.admit(ip("2001:db8:1:2::ffff")).err(), Some(Turned::ClientFull));
        assert!(a.admit(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn the_proxies_share_is_kept_from_other_clients_and_proxies_have_no_cap() {
        let a = admission(4, 10, 2);
        let _held: Vec<_> = ["192.0.2.1", "192.0.2.2"]
            .iter()
            .map(|c| a.admit(ip(c)).unwrap())
            .collect();
        assert_eq!(a.admit(ip("192.0.2.3")).err(), Some(Turned::SharedFull));
        let proxy: Vec<_> = (0..20).map(|_| a.admit(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(proxy.len(), 20);
        assert_eq!(a.open.lock().unwrap().clients, 2);
    }
}
