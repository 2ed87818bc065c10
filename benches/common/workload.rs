//! What `benches/peers.rs` and `benches/scale.rs` share: the key mix and its secrets, the
//! child processes that open a store (or scan its log) on their own and report its
//! resident memory, the raw sled scan replay is compared with, and the timing of verifies
//! and of durable creates.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime};

use keyledger::{Credits, IpNet, KEY_LEN, KeyStore, MAX_CREDITS, NewKey, check_format};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// sled's page cache for every sled database in these benchmarks (keyledger's and the
/// peer's).
pub(crate) const CACHE_BYTES: u64 = 1 << 20;
/// keyledger's default snapshot interval, set explicitly.
pub(crate) const SNAPSHOT_EVERY: u64 = 100_000;
/// The rate limit every fourth key holds (with 2^53 credits): four billion a month is never
/// reached by a run, so every limited verify passes and pays for its bucket and a credit.
pub(crate) const BENCH_LIMIT: &str = "4000000000/30d";
/// The client address every verification presents; every key whitelists 10.0.0.0/8.
pub(crate) const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 3);
pub(crate) const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

// ---------------------------------------------------------------------------------------
// Keys.

/// Key `n` of the mix: whitelisting 10.0.0.0/8, role `reader`; every other one expires (in
/// a year: verify reads the clock for it); every fourth (`n % 4 == 2`) has a rate limit and
/// credits, so high that no run exhausts them (verify takes from its bucket and spends a
/// credit on every hit). Keys with `n % 4 == 0` are plain: the `hit` workloads use them.
pub(crate) fn bench_key(n: usize) -> NewKey {
    let net: IpNet = "10.0.0.0/8".parse().unwrap();
    let mut new = NewKey::new(format!("svc-{n}")).role("reader").allow(net);
    if n % 2 == 1 {
        new = new.expires_at(SystemTime::now() + Duration::from_secs(365 * 86_400));
    }
    if n % 4 == 2 {
        new = new
            .rate_limit(BENCH_LIMIT.parse().unwrap())
            .credits(Credits::new(MAX_CREDITS).unwrap());
    }
    new
}

/// A well-formed key that no store issued: `klk_`, 30 base62 characters, the checksum.
pub(crate) fn fake_token(rng: &mut impl Rng) -> String {
    token_from(|| BASE62[rng.random_range(0..BASE62.len())])
}

/// A well-formed key whose 30 characters are `next()`'s (base62 bytes), then the checksum.
pub(crate) fn token_from(mut next: impl FnMut() -> u8) -> String {
    let mut s = String::with_capacity(KEY_LEN);
    s.push_str(keyledger::KEY_PREFIX);
    for _ in 0..30 {
        s.push(char::from(next()));
    }
    let mut n = crc32fast::hash(s.as_bytes());
    let mut check = [b'0'; 6];
    for slot in check.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    s.extend(check.iter().map(|&b| char::from(b)));
    assert_eq!(check_format(&s), Ok(()));
    s
}

/// What the peers (and the limit) store for a key, as a user of them would: its blake3
/// hash.
#[inline]
pub(crate) fn peer_hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

// ---------------------------------------------------------------------------------------
// Memory, and the child processes that measure it.

/// A line of /proc/self/status in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|kb| kb.trim().parse::<u64>().unwrap() * 1024)
        .unwrap()
}

/// This process's resident memory now.
pub(crate) fn rss_bytes() -> u64 {
    status_bytes("VmRSS")
}

/// The most this process has held resident.
pub(crate) fn peak_rss_bytes() -> u64 {
    status_bytes("VmHWM")
}

/// Runs this benchmark's binary again with `args` (a child's name first) and returns
/// the JSON it prints; its standard error goes to ours.
pub(crate) fn in_child(args: &[&str]) -> Value {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "child {} failed", args[0]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs the shared child named by `args[1]` (`__open DIR SNAPSHOT_EVERY`, `__scan DIR`)
/// and says whether it did.
pub(crate) fn shared_child(args: &[String]) -> bool {
    match args.get(1).map(String::as_str) {
        Some("__open") => open_child(Path::new(&args[2]), args[3].parse().unwrap()),
        Some("__scan") => scan_child(Path::new(&args[2])),
        _ => return false,
    }
    true
}

/// In a fresh process: opens the store in `dir` (snapshots every `snapshot_every`
/// records; 0: a full replay) and prints how long that took, the resident memory it added
/// when open returned and once the history under a snapshot was verified in the
/// background, and the peak.
fn open_child(dir: &Path, snapshot_every: u64) {
    let before = rss_bytes();
    let t = Instant::now();
    let store = KeyStore::builder()
        .cache_bytes(CACHE_BYTES)
        .snapshot_every(snapshot_every)
        .open(dir)
        .unwrap();
    let took = t.elapsed();
    let after = rss_bytes();
    let verified = matches!(store.wait_for_integrity(), keyledger::Integrity::Verified);
    let settled_after = t.elapsed();
    let settled = rss_bytes();
    let keys = store.live_key_count().max(1) as f64;
    println!(
        "{}",
        json!({
            "rss_before_bytes": before,
            "rss_after_bytes": after,
            "open_ms": ms(took),
            "opened_from_snapshot": store.opened_from_snapshot(),
            "events": store.last_seq(),
            "live_keys": store.live_key_count(),
            "bytes_per_key": after.saturating_sub(before) as f64 / keys,
            "history_verified": verified,
            "history_verified_ms": ms(settled_after),
            "rss_verified_bytes": settled,
            "bytes_per_key_verified": settled.saturating_sub(before) as f64 / keys,
            "rss_peak_bytes": peak_rss_bytes(),
            "peak_bytes_per_key": peak_rss_bytes().saturating_sub(before) as f64 / keys,
        })
    );
}

/// In a fresh process: [`raw_scan`] of the store's log, without a projection: how long it
/// took, and the resident memory it added (sled's share of a reopened store's memory).
fn scan_child(dir: &Path) {
    let before = rss_bytes();
    let scan = raw_scan(dir);
    let after = rss_bytes();
    println!(
        "{}",
        json!({
            "scan_ms": ms(scan.open + scan.iterate),
            "scan_and_hash_ms": ms(scan.open + scan.iterate_hash),
            "sled_open_ms": ms(scan.open),
            "log_value_bytes": scan.bytes,
            "entries": scan.entries,
            "records": scan.records,
            "rss_before_bytes": before,
            "rss_after_bytes": after,
            "bytes_per_record": (after.saturating_sub(before)) as f64 / scan.records.max(1) as f64,
        })
    );
}

// ---------------------------------------------------------------------------------------
// The raw scan a replay is compared with.

pub(crate) struct Scan {
    pub(crate) open: Duration,
    pub(crate) iterate: Duration,
    /// Iterating again, splitting blocks and computing every record's chain hash: the work
    /// any reader that proves the log must do before it decodes anything.
    pub(crate) iterate_hash: Duration,
    /// The log's values, in bytes.
    pub(crate) bytes: u64,
    /// Its entries (blocks, and records of format 1)...
    pub(crate) entries: u64,
    /// ...and the records they hold.
    pub(crate) records: u64,
}

/// The store's sled database and log tree, opened directly (the store must be closed),
/// with the benchmark's small cache.
fn open_raw_log(dir: &Path) -> (sled::Db, sled::Tree) {
    let db = sled::Config::new()
        .path(dir.join("log"))
        .cache_capacity(CACHE_BYTES)
        .flush_every_ms(None)
        .open()
        .unwrap();
    let tree = db.open_tree("log").unwrap();
    (db, tree)
}

/// Opens the store's sled database (the store is closed) and reads every record of the
/// log tree: what replay cannot avoid.
pub(crate) fn raw_scan(dir: &Path) -> Scan {
    let t = Instant::now();
    let (_db, tree) = open_raw_log(dir);
    let open = t.elapsed();
    let t = Instant::now();
    let (mut entries, mut records, mut bytes) = (0u64, 0u64, 0u64);
    for kv in tree.iter() {
        let (k, v) = kv.unwrap();
        // Entries are keyed by an 8-byte sequence number; other keys are metadata. A block
        // (version 2) says how many records it holds; a format 1 entry is one record.
        if k.len() == 8 {
            entries += 1;
            records += match v.get(..2) {
                Some([2, 0]) => u64::from(u32::from_le_bytes(v[10..14].try_into().unwrap())),
                _ => 1,
            };
        }
        bytes += v.len() as u64;
        black_box(v.first());
    }
    let iterate = t.elapsed();
    let t = Instant::now();
    let chain_key = b"keyledger.log-chain.blake3.v1.26";
    let mut hashed = 0u64;
    for kv in tree.iter() {
        let (k, v) = kv.unwrap();
        if k.len() != 8 {
            continue;
        }
        if v.get(..2) == Some(&[2, 0]) {
            // The block layout of docs/design.md: checksum, then each record.
            black_box(blake3::hash(&v[..v.len() - 32]));
            let mut rest = &v[14..v.len() - 32];
            while let Some((len, tail)) = rest.split_first_chunk::<4>() {
                let (record, after) = tail.split_at(u32::from_le_bytes(*len) as usize);
                black_box(blake3::keyed_hash(chain_key, record));
                hashed += 1;
                rest = after;
            }
        } else {
            black_box(blake3::keyed_hash(chain_key, &v));
            hashed += 1;
        }
    }
    let iterate_hash = t.elapsed();
    assert_eq!(hashed, records);
    Scan {
        open,
        iterate,
        iterate_hash,
        bytes,
        entries,
        records,
    }
}

// ---------------------------------------------------------------------------------------
// Verify.

pub(crate) fn check_answers<M, F>(system: &str, make: &M, hits: &[&str], misses: &[&str])
where
    M: Fn() -> F,
    F: FnMut(&str) -> bool,
{
    let mut f = make();
    let step = (hits.len() / 1000).max(1);
    for t in hits.iter().step_by(step) {
        assert!(f(t), "{system} does not verify a live key");
    }
    for t in misses.iter().step_by(step) {
        assert!(!f(t), "{system} verifies an unknown key");
    }
}

/// Runs `f` over `queries` from `offset`, cycling, for about `time`; returns (calls, time).
pub(crate) fn run_verify<F: FnMut(&str) -> bool>(
    f: &mut F,
    queries: &[&str],
    offset: usize,
    time: Duration,
) -> (u64, Duration) {
    const CHUNK: usize = 256;
    for q in queries.iter().skip(offset).take(1024) {
        black_box(f(q));
    }
    let mut i = offset % queries.len();
    let mut calls = 0u64;
    let mut yes = 0u64;
    let start = Instant::now();
    // Bounded: stops after `time`, or after 2^32 calls.
    while calls < 1 << 32 {
        for _ in 0..CHUNK {
            yes += u64::from(f(queries[i]));
            i += 1;
            if i == queries.len() {
                i = 0;
            }
        }
        calls += CHUNK as u64;
        if start.elapsed() >= time {
            break;
        }
    }
    black_box(yes);
    (calls, start.elapsed())
}

pub(crate) fn ns_per_op<M, F>(make: &M, queries: &[&str], time: Duration) -> f64
where
    M: Fn() -> F,
    F: FnMut(&str) -> bool,
{
    let mut f = make();
    let (calls, took) = run_verify(&mut f, queries, 0, time);
    took.as_nanos() as f64 / calls as f64
}

// ---------------------------------------------------------------------------------------
// Durable creates.

pub(crate) struct CreateRun {
    pub(crate) callers: usize,
    pub(crate) ops: usize,
    pub(crate) secs: f64,
    pub(crate) ops_per_s: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
}

impl CreateRun {
    pub(crate) fn json(&self) -> Value {
        json!({
            "callers": self.callers,
            "ops": self.ops,
            "secs": self.secs,
            "ops_per_s": self.ops_per_s,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "max_us": self.max_us,
        })
    }
}

/// `callers` threads each calling `op(thread, i, rng)` for about `time`, or `calls_each`
/// times; every call is one durable create.
pub(crate) fn run_creates<F>(callers: usize, time: Duration, calls_each: usize, op: F) -> CreateRun
where
    F: Fn(usize, usize, &mut StdRng) + Sync,
{
    let go = Barrier::new(callers + 1);
    let (mut lat, took) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..callers)
            .map(|t| {
                let (go, op) = (&go, &op);
                s.spawn(move || {
                    let mut rng = StdRng::from_os_rng();
                    let mut lat = Vec::with_capacity(4096);
                    go.wait();
                    let start = Instant::now();
                    for i in 0..calls_each {
                        let t0 = Instant::now();
                        op(t, i, &mut rng);
                        lat.push(t0.elapsed().as_nanos() as u64);
                        if start.elapsed() >= time {
                            break;
                        }
                    }
                    lat
                })
            })
            .collect();
        go.wait();
        let start = Instant::now();
        let lat: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        (lat, start.elapsed())
    });
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1e3;
    CreateRun {
        callers,
        ops: lat.len(),
        secs: took.as_secs_f64(),
        ops_per_s: lat.len() as f64 / took.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: lat.last().copied().unwrap_or(0) as f64 / 1e3,
    }
}

// ---------------------------------------------------------------------------------------
// Figures.

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
