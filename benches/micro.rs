//! Criterion micro-benchmarks of keyledger's public API: the key format check, `verify`
//! (hit, unknown key, malformed, refused address) on a store holding 100k keys, and one
//! durable create (an append and a flush, one caller).
//!
//! Record encoding and decoding are private; with `--features fuzzing` a decode, encode and
//! decode round trip of one record is measured through the fuzz targets' hidden entry point.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::Criterion;
use keyledger::{Actor, IpNet, KeyStore, NewKey, Rejection, check_format};
use rand::SeedableRng;
use rand::seq::SliceRandom;

const KEYS: usize = 100_000;
const LOAD_THREADS: usize = 64;
const INSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
const OUTSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn net() -> IpNet {
    "10.0.0.0/8".parse().unwrap()
}

/// A store in `dir` holding `KEYS` keys, filled by concurrent creators (the writer
/// commits them in groups); returns it and the secrets, shuffled.
fn filled_store(dir: &std::path::Path) -> (KeyStore, Vec<String>) {
    let store = KeyStore::builder().cache_bytes(1 << 20).open(dir).unwrap();
    let admin = Actor::admin("bench-admin");
    let next = AtomicUsize::new(0);
    let mut secrets: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..LOAD_THREADS)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    // Bounded: each index below KEYS is taken once.
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= KEYS {
                            return mine;
                        }
                        let new = NewKey::new(format!("svc-{i}")).role("reader").allow(net());
                        let created = store.create_key(&admin, new).unwrap();
                        mine.push(created.key.expose_secret().to_owned());
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    secrets.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
    assert_eq!(store.live_key_count(), KEYS);
    (store, secrets)
}

/// Well-formed keys that the store never issued: secrets of another store.
fn unknown_keys(n: usize) -> Vec<String> {
    let other = KeyStore::builder().open_temporary().unwrap();
    let admin = Actor::admin("bench-admin");
    (0..n)
        .map(|i| {
            let new = NewKey::new(format!("other-{i}")).role("reader");
            other
                .create_key(&admin, new)
                .unwrap()
                .key
                .expose_secret()
                .to_owned()
        })
        .collect()
}

fn token_format(c: &mut Criterion) {
    let good = unknown_keys(1).remove(0);
    let mut bad_checksum = good.clone().into_bytes();
    bad_checksum[20] = if bad_checksum[20] == b'A' { b'B' } else { b'A' };
    let bad_checksum = String::from_utf8(bad_checksum).unwrap();
    let mut g = c.benchmark_group("check_format");
    g.bench_function("valid", |b| {
        b.iter(|| check_format(black_box(&good)));
    });
    g.bench_function("bad_checksum", |b| {
        b.iter(|| check_format(black_box(&bad_checksum)));
    });
    g.bench_function("wrong_length", |b| {
        b.iter(|| check_format(black_box("klk_too_short")));
    });
    g.finish();
}

/// Cycles through `tokens`, one per iteration, so lookups land all over the table.
fn cycle<'a>(tokens: &'a [String]) -> impl FnMut() -> &'a str {
    let mut i = 0;
    move || {
        i = if i + 1 == tokens.len() { 0 } else { i + 1 };
        &tokens[i]
    }
}

fn verify(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (store, secrets) = filled_store(dir.path());
    let unknown = unknown_keys(1000);
    let malformed: Vec<String> = secrets
        .iter()
        .take(1000)
        .map(|s| {
            let mut b = s.clone().into_bytes();
            b[20] = if b[20] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        })
        .collect();
    assert!(store.verify(&secrets[0], INSIDE).is_ok());
    assert_eq!(
        store.verify(&unknown[0], INSIDE).unwrap_err(),
        Rejection::UnknownKey
    );
    assert!(matches!(
        store.verify(&malformed[0], INSIDE).unwrap_err(),
        Rejection::Malformed(_)
    ));
    assert_eq!(
        store.verify(&secrets[0], OUTSIDE).unwrap_err(),
        Rejection::IpNotWhitelisted
    );

    let mut g = c.benchmark_group("verify_100k");
    g.bench_function("hit", |b| {
        let mut next = cycle(&secrets);
        b.iter(|| store.verify(black_box(next()), INSIDE));
    });
    g.bench_function("unknown_key", |b| {
        let mut next = cycle(&unknown);
        b.iter(|| store.verify(black_box(next()), INSIDE));
    });
    g.bench_function("malformed", |b| {
        let mut next = cycle(&malformed);
        b.iter(|| store.verify(black_box(next()), INSIDE));
    });
    g.bench_function("ip_not_whitelisted", |b| {
        let mut next = cycle(&secrets);
        b.iter(|| store.verify(black_box(next()), OUTSIDE));
    });
    g.finish();
}

/// Decode, encode and decode again one stored record (a creation), through the hidden
/// entry point of the fuzz targets: the codec itself is private. Needs `--features fuzzing`.
#[cfg(feature = "fuzzing")]
fn record_roundtrip(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = KeyStore::open(dir.path()).unwrap();
        let new = NewKey::new("notifications bot").role("notifier").allow(net());
        store.create_key(&Actor::admin("alice"), new).unwrap();
    }
    let db = sled::open(dir.path().join("log")).unwrap();
    let record = db
        .open_tree("log")
        .unwrap()
        .iter()
        .find_map(|kv| kv.ok().filter(|(k, _)| k.len() == 8).map(|(_, v)| v.to_vec()))
        .unwrap();
    assert!(keyledger::fuzzing::record_roundtrip(&record));
    c.bench_function("record/decode_encode_decode", |b| {
        b.iter(|| keyledger::fuzzing::record_roundtrip(black_box(&record)));
    });
}

fn create(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::builder().cache_bytes(1 << 20).open(dir.path()).unwrap();
    let admin = Actor::admin("bench-admin");
    let mut i = 0u64;
    let mut g = c.benchmark_group("create");
    g.sample_size(20);
    g.bench_function("durable_one_caller", |b| {
        b.iter(|| {
            i += 1;
            let new = NewKey::new(format!("svc-{i}")).role("reader").allow(net());
            store.create_key(&admin, new).unwrap()
        });
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    token_format(&mut c);
    verify(&mut c);
    create(&mut c);
    #[cfg(feature = "fuzzing")]
    record_roundtrip(&mut c);
    c.final_summary();
}
