//! Hosts of a fleet in this process: each a `KeyStore` opened with `Builder::fleet` on a
//! real nats-server (see `nats.rs`), with its own directory, for tests that call the
//! library directly (`tests/fleet_limits.rs`).

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use keyledger::{ChainKey, FleetOptions, KeyStore, UsageSharing};

/// The chain key every host of these tests shares.
pub(crate) const CHAIN_KEY: [u8; 32] = [3; 32];

/// Timings short enough for tests: heads every 100 ms, a lease of 2 s, usage every 200 ms.
pub(crate) fn options(url: &str, host: &str) -> FleetOptions {
    FleetOptions::new(url)
        .host_id(host)
        .heartbeat(Duration::from_millis(100))
        .lease(Duration::from_secs(2))
        .usage_interval(Duration::from_millis(200))
}

/// Opens `names.len()` hosts under `dir`, each with `options(url, name)` changed by
/// `tune`, one after the other (the first bootstraps the stream).
pub(crate) fn open_hosts(
    dir: &Path,
    url: &str,
    names: &[&str],
    tune: impl Fn(FleetOptions) -> FleetOptions,
) -> Vec<KeyStore> {
    names
        .iter()
        .map(|name| {
            KeyStore::builder()
                .chain_key(ChainKey::from_bytes(CHAIN_KEY))
                .fleet(tune(options(url, name)))
                .open(dir.join(name))
                .unwrap_or_else(|e| panic!("host {name}: {e}"))
        })
        .collect()
}

/// Waits (at most `secs`) until `f` holds, polling every 20 ms.
pub(crate) fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How this host shares usage, as its fleet status says.
pub(crate) fn sharing(store: &KeyStore) -> UsageSharing {
    store.fleet_status().map(|s| s.usage.sharing).unwrap_or_default()
}
