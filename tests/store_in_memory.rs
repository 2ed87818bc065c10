//! The store's promises that hold whatever log it runs on, run on the in-memory log: the
//! proof that nothing but bytes crosses the storage seam.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use keyledger::{KeyStore, NewKey};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn temp_store() -> ((), KeyStore) {
    ((), KeyStore::builder().open_temporary().unwrap())
}

fn bot(name: &str) -> NewKey {
    NewKey::new(name).role("bot")
}

#[path = "store_cases/mod.rs"]
mod cases;
