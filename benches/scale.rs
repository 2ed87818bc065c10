//! keyledger with ten million keys on one host: what a key costs in memory, how long a
//! store takes to open, what verify costs against the limit, and whether anyone feels the
//! snapshots. Every figure comes from a fresh process, so that none carries another
//! phase's memory or threads:
//!
//! 1. `load`: N keys of the peers benchmark's mix (`benches/common/workload.rs`) through
//!    `import_keys`, 10,000 a call, snapshots every 100,000 records (the default):
//!    resident bytes per live key while loading (and their growth, a tenth at a time),
//!    the snapshots the writer saved meanwhile, the close. A key with credits is two
//!    records, so the log holds 1.25 records a key (12.5M at 10M keys).
//! 2. `open`: the first open after the writes (sled recovers its log), then, twice each,
//!    a raw sled scan of the same records (as `peers` measures it), a full replay and an
//!    open from the snapshot, each in a process of its own that reports the resident
//!    memory it added (per live key, for the opens: when open returns, and once the
//!    history under the snapshot is verified in the background).
//! 3. `verify`: hit (keys without expiry nor limit, a random sample of up to 1M), miss and
//!    50/50 ns, against the limit (blake3 and a std `HashMap` holding all N keys' hashes),
//!    median of three rounds; last-used stamping and usage counting on, as by default.
//! 4. `auth`: `GET /auth` on `keyledger serve`'s server (the library's `Server`, behind a
//!    trusted proxy that forwards the client's address), paced at 1,000 requests/s over 8
//!    keep-alive connections, idle for 10 s, then for 20 s while 32 callers create keys
//!    across a snapshot: the window opens 2,000 records short of the next one, on a store
//!    opened from the snapshot the load closed with. Paced rather than a closed loop: on
//!    two cores a saturating load generator would take the CPU from the writer and measure
//!    itself. A request's latency counts from when it was due if the one before on its
//!    connection made it late, so a stall counts for every request it holds up.
//! 5. `creates`: 32 callers make N/10 durable creates (1M at 10M keys), stopping after
//!    5 minutes if not done (the report says so), across the snapshots they cause.
//!
//! Before the load, each open and each timed write, the disk is left to settle
//! (`benches/common/disk.rs`). `cargo bench --bench scale` runs 10,000,000 keys;
//! `-- --keys N` fewer (the ratios keep their `_10m` names, and the report its `keys`);
//! `-- --quiet-timeout SECS` bounds each wait for a quiet disk; `-- --keep-dir` keeps the
//! store; `KEYLEDGER_BENCH_TRACE=1` prints, in the `auth` and `creates` phases, the
//! store's log lines, every slow verify of a probe thread and every slow create
//! (`benches/scale/trace.rs`). Prints a table and writes `target/bench/scale.json`.

#![allow(clippy::unwrap_used)]

#[path = "scale/auth.rs"]
mod auth;
mod common;
#[path = "common/disk.rs"]
mod disk;
#[path = "common/serve.rs"]
mod serve;
#[path = "scale/trace.rs"]
mod trace;
#[path = "common/workload.rs"]
mod workload;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyledger::{Actor, ExistingKey, Histogram, IpNet, KeyStore, NewKey, Statistics};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use auth::paced_auth;
use disk::Disk;
use serve::{runtime, serve_keyledger};
use workload::{
    BASE62, CACHE_BYTES, CLIENT, SNAPSHOT_EVERY, bench_key, check_answers, fake_token, in_child, median, ms,
    ns_per_op, peak_rss_bytes, peer_hash, rss_bytes, run_creates, token_from,
};

const DEFAULT_KEYS: usize = 10_000_000;
/// Keys per `import_keys` call.
const LOAD_BATCH: usize = 10_000;
/// Times each open is measured.
const OPEN_REPS: usize = 2;
/// At most this many hits are sampled for verify (spread over the whole store).
const HIT_SAMPLE: usize = 1_000_000;
const MISSES: usize = 200_000;
const VERIFY_ROUNDS: usize = 3;
const VERIFY_TIME: Duration = Duration::from_millis(500);
const AUTH_CONNECTIONS: usize = 8;
/// `/auth` requests per second, over all connections.
const AUTH_RATE: f64 = 1_000.0;
const AUTH_IDLE_TIME: Duration = Duration::from_secs(10);
/// How long 32 callers create while `/auth` is asked, across a snapshot.
const WINDOW_TIME: Duration = Duration::from_secs(20);
/// How far short of the next snapshot the window opens, in records.
const WINDOW_SHORT: u64 = 2_000;
const CALLERS: usize = 32;
/// The durable creates at 10M keys (N/10 at N keys).
const CREATES: usize = 1_000_000;
/// The creates stop after this long, done or not.
const CREATE_CAP: Duration = Duration::from_secs(300);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if workload::shared_child(&args) {
        return;
    }
    if let Some(child) = args.get(1).filter(|a| a.starts_with("__")) {
        let (dir, n) = (Path::new(&args[2]), args[3].parse().unwrap());
        match child.as_str() {
            "__load" => load_child(dir, n),
            "__verify" => verify_child(dir, n),
            "__auth" => auth_child(dir, n),
            "__creates" => creates_child(dir, n),
            other => panic!("no child {other}"),
        }
        return;
    }
    let n = args
        .iter()
        .position(|a| a == "--keys")
        .and_then(|i| args.get(i + 1))
        .map_or(DEFAULT_KEYS, |n| {
            n.parse::<usize>().expect("--keys takes a number")
        })
        .max(LOAD_BATCH);
    // The children wait for a quiet disk as long as the parent does.
    let quiet_args: Vec<&str> = args
        .iter()
        .position(|a| a == "--quiet-timeout")
        .map_or(&[][..], |i| &args[i..(i + 2).min(args.len())])
        .iter()
        .map(String::as_str)
        .collect();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("keyledger");
    let d = store_dir.to_str().unwrap();
    let keys = n.to_string();
    let every = SNAPSHOT_EVERY.to_string();
    let child = |fixed: &[&str]| {
        let mut all = fixed.to_vec();
        all.extend(&quiet_args);
        in_child(&all)
    };
    eprintln!("scale: {n} keys, temp dir {}", tmp.path().display());
    let mut quiet = Disk::of(tmp.path());
    let mut phase_s = serde_json::Map::new();
    let mut lap = Instant::now();
    let mut phase_done = |name: &str| {
        phase_s.insert(name.to_owned(), json!(lap.elapsed().as_secs_f64()));
        eprintln!("  {name}: {:.0} s", lap.elapsed().as_secs_f64());
        lap = Instant::now();
    };

    quiet.settle("load");
    let load = child(&["__load", d, &keys]);
    let snapshot_file_bytes = std::fs::metadata(store_dir.join("snapshot")).map_or(0, |m| m.len());
    phase_done("load");

    quiet.settle("first_open");
    let first_open = child(&["__open", d, &every]);
    let events = first_open["events"].as_u64().unwrap();
    let (mut scans, mut fulls, mut snaps) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 1..=OPEN_REPS {
        quiet.settle(&format!("raw_scan_{rep}"));
        let scan = child(&["__scan", d]);
        assert_eq!(scan["records"], json!(events));
        scans.push(scan);
        quiet.settle(&format!("full_replay_{rep}"));
        fulls.push(child(&["__open", d, "0"]));
        quiet.settle(&format!("snapshot_open_{rep}"));
        snaps.push(child(&["__open", d, &every]));
    }
    phase_done("open");

    quiet.settle("verify");
    let verify = child(&["__verify", d, &keys]);
    phase_done("verify");
    quiet.settle("auth");
    let auth = child(&["__auth", d, &keys]);
    phase_done("auth");
    quiet.settle("creates");
    let creates = child(&["__creates", d, &keys]);
    phase_done("creates");

    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let min_of = |runs: &[Value], k: &str| runs.iter().map(|r| f(&r[k])).fold(f64::INFINITY, f64::min);
    let median_of = |runs: &[Value], k: &str| median(&runs.iter().map(|r| f(&r[k])).collect::<Vec<_>>());
    let scan_ms = min_of(&scans, "scan_ms");
    let full_ms = min_of(&fulls, "open_ms");
    let snap_ms = min_of(&snaps, "open_ms");
    let from_snapshot = snaps.iter().all(|s| s["opened_from_snapshot"] == json!(true));
    let kl = &verify["keyledger"];
    let limit = &verify["limit"];
    // Snapshots of the whole store, written while callers create: the /auth window's and
    // the creates'.
    let written = [&auth["snapshots"], &creates["snapshots"]];
    let snapshot_s = written.iter().map(|s| f(&s["seconds"])).sum::<f64>()
        / written.iter().map(|s| f(&s["count"])).sum::<f64>();
    let snapshot_bytes = written
        .iter()
        .rev()
        .find(|s| f(&s["count"]) > 0.0)
        .map_or(Value::Null, |s| s["last_bytes"].clone());
    let create_max_ms = f(&creates["run"]["max_us"]).max(f(&auth["creates"]["max_us"])) / 1e3;
    let ratios = json!({
        "bytes_per_key_10m": load["bytes_per_key"],
        "bytes_per_key_reopened_10m": median_of(&snaps, "bytes_per_key_verified"),
        "snapshot_open_vs_full_10m": if from_snapshot { json!(snap_ms / full_ms) } else { Value::Null },
        "create_max_ms_10m": create_max_ms,
        "verify_hit_vs_limit_10m": f(&kl["hit_ns"]) / f(&limit["hit_ns"]),
        "auth_p99_snapshot_vs_idle": f(&auth["during"]["p99_us"]) / f(&auth["idle"]["p99_us"]),
    });
    let report = json!({
        "keys": n,
        "ratios_at_keys": n,
        "machine": common::machine(),
        "settings": {
            "key_mix": "benches/common/workload.rs bench_key: role reader, whitelist 10.0.0.0/8; \
                        every other key expires in a year; every fourth has a rate limit \
                        (4000000000/30d) and credits; verify hits use keys with neither",
            "load_batch": LOAD_BATCH,
            "snapshot_every": SNAPSHOT_EVERY,
            "sled_cache_bytes": CACHE_BYTES,
            "open_reps": OPEN_REPS,
            "verify_rounds": VERIFY_ROUNDS,
            "verify_time_per_sample_s": VERIFY_TIME.as_secs_f64(),
            "auth": format!(
                "GET /auth?role=reader, X-Forwarded-For {CLIENT} from the trusted proxy \
                 127.0.0.1; {AUTH_CONNECTIONS} keep-alive connections paced at {AUTH_RATE} \
                 requests/s in all; server and client on one tokio worker each"
            ),
            "callers": CALLERS,
            "window_s": WINDOW_TIME.as_secs_f64(),
            "create_cap_s": CREATE_CAP.as_secs_f64(),
            "limit": "blake3 + std HashMap<[u8; 32], u64> (SipHash) holding every key's hash",
        },
        "load": load,
        "memory": {
            "bytes_per_key_loading": load["bytes_per_key"],
            "bytes_per_key_reopened_from_snapshot": median_of(&snaps, "bytes_per_key"),
            "bytes_per_key_reopened_from_snapshot_verified": median_of(&snaps, "bytes_per_key_verified"),
            "bytes_per_key_reopened_full_replay": median_of(&fulls, "bytes_per_key"),
            "peak_bytes_per_key_loading": load["peak_bytes_per_key"],
            "peak_bytes_per_key_snapshot_open": median_of(&snaps, "peak_bytes_per_key"),
            "peak_bytes_per_key_full_replay": median_of(&fulls, "peak_bytes_per_key"),
            "bytes_per_record_raw_scan": median_of(&scans, "bytes_per_record"),
        },
        "open": {
            "events": events,
            "first_open_after_writes": first_open,
            "full_replay_ms": full_ms,
            "snapshot_open_ms": snap_ms,
            "opened_from_snapshot": from_snapshot,
            "raw_scan_ms": scan_ms,
            "raw_scan_and_hash_ms": min_of(&scans, "scan_and_hash_ms"),
            "full_replay_vs_raw_scan": full_ms / scan_ms,
            "raw_scan_children": scans,
            "full_replay_children": fulls,
            "snapshot_open_children": snaps,
        },
        "snapshot": {
            "file_bytes_after_load": snapshot_file_bytes,
            "write_s": snapshot_s,
            "bytes": snapshot_bytes,
            "during_load": load["snapshots"],
            "during_auth_window": auth["snapshots"],
            "during_creates": creates["snapshots"],
        },
        "verify": verify,
        "auth": auth,
        "create": creates,
        "quiet_disk": quiet.report(),
        "phase_s": phase_s,
        "ratios": ratios,
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    print_table(&report);
    let path = common::write_report("scale.json", &report);
    println!("wrote {}", path.display());
    if args.iter().any(|a| a == "--keep-dir") {
        println!("kept {}", tmp.keep().display());
    }
}

// ---------------------------------------------------------------------------------------
// Keys.

/// Key `i`'s secret, a function of `i` alone: any process names any key without holding
/// ten million secrets.
fn secret(i: usize) -> String {
    let hash = blake3::hash(&(i as u64).to_le_bytes());
    let mut bytes = hash.as_bytes().iter();
    token_from(|| BASE62[usize::from(*bytes.next().unwrap()) % BASE62.len()])
}

/// A random key without expiry nor limit (`i % 4 == 0`) out of the first `n`.
fn plain_key(rng: &mut impl Rng, n: usize) -> usize {
    4 * rng.random_range(0..n.div_ceil(4))
}

/// Imports keys `from..to`, each `key(i)` with [`secret`]`(i)`, [`LOAD_BATCH`] a call.
fn import(
    store: &KeyStore,
    from: usize,
    to: usize,
    key: impl Fn(usize) -> NewKey,
    mut after_batch: impl FnMut(usize),
) {
    let admin = Actor::admin("bench-admin");
    for start in (from..to).step_by(LOAD_BATCH) {
        let end = (start + LOAD_BATCH).min(to);
        let keys = (start..end)
            .map(|i| ExistingKey::with_secret(key(i), &secret(i)).unwrap())
            .collect();
        store.import_keys(&admin, keys).unwrap();
        after_batch(end);
    }
}

fn open_store(dir: &Path) -> KeyStore {
    KeyStore::builder()
        .cache_bytes(CACHE_BYTES)
        .snapshot_every(SNAPSHOT_EVERY)
        .open(dir)
        .unwrap()
}

/// Opens the store from its snapshot and waits for the check of the history under it,
/// which would otherwise share the CPU with what is measured.
fn open_verified(dir: &Path) -> KeyStore {
    let store = open_store(dir);
    store.wait_for_integrity();
    store
}

// ---------------------------------------------------------------------------------------
// The children.

/// In a fresh process: loads `n` keys into a new store; prints resident memory before,
/// every tenth of the way and after, and the snapshots taken meanwhile.
fn load_child(dir: &Path, n: usize) {
    let store = open_store(dir);
    let rss_open = rss_bytes();
    let started = Instant::now();
    let mut growth = Vec::new();
    let tenth = n.div_ceil(10);
    import(&store, 0, n, bench_key, |done| {
        if done % tenth < LOAD_BATCH || done == n {
            let rss = rss_bytes();
            eprintln!(
                "  load: {done} keys, {} MiB resident, {:.0} s",
                rss >> 20,
                started.elapsed().as_secs_f64()
            );
            growth.push(json!({
                "keys": done,
                "s": started.elapsed().as_secs_f64(),
                "bytes_per_key": rss.saturating_sub(rss_open) as f64 / done as f64,
            }));
        }
    });
    let took = started.elapsed();
    let rss_loaded = rss_bytes();
    let peak = peak_rss_bytes();
    assert_eq!(store.live_key_count(), n);
    let stats = store.statistics();
    let events = store.last_seq();
    let closing = Instant::now();
    drop(store);
    let closed = closing.elapsed();
    println!(
        "{}",
        json!({
            "keys": n,
            "events": events,
            "secs": took.as_secs_f64(),
            "keys_per_s": n as f64 / took.as_secs_f64(),
            "rss_open_bytes": rss_open,
            "rss_loaded_bytes": rss_loaded,
            "rss_peak_bytes": peak,
            "bytes_per_key": rss_loaded.saturating_sub(rss_open) as f64 / n as f64,
            "peak_bytes_per_key": peak.saturating_sub(rss_open) as f64 / n as f64,
            "growth": growth,
            "snapshots": snapshots(&stats, None),
            "close_ms": ms(closed),
            "note": "bytes per key: resident memory the store gained from open (empty) to \
                     loaded, over live keys; close_ms includes the last snapshot",
        })
    );
}

/// The snapshots saved since `before` (or since open): how many, their mean time, and
/// the size of the last.
fn snapshots(now: &Statistics, before: Option<&Statistics>) -> Value {
    let (count0, sum0) = before.map_or((0, 0.0), |b| (b.snapshot_seconds.count, b.snapshot_seconds.sum));
    let count = now.snapshot_seconds.count - count0;
    let sum = now.snapshot_seconds.sum - sum0;
    json!({
        "count": count,
        "seconds": sum,
        "mean_s": if count > 0 { json!(sum / count as f64) } else { Value::Null },
        "last_bytes": now.snapshot_bytes,
        "failures": now.snapshot_failures,
    })
}

/// What the store's own histograms (`KeyStore::statistics`) counted between `before` and
/// `now`: the server's checks (`verify`: reading the request and the verify, the lock
/// waits included), the writer's batches (`commit`: from taking them to answering their
/// callers) and its syncs; for each, the count and the non-empty buckets as `[upper
/// bound in ms, count]` (`null`: past the last bound).
fn store_timings(now: &Statistics, before: &Statistics) -> Value {
    let delta = |now: &Histogram, before: &Histogram| {
        let buckets: Vec<Value> = now
            .buckets
            .iter()
            .zip(&before.buckets)
            .filter(|((_, a), (_, b))| a > b)
            .map(|((le, a), (_, b))| json!([le * 1e3, a - b]))
            .collect();
        json!({ "count": now.count - before.count, "buckets_ms": buckets })
    };
    json!({
        "verify": delta(&now.verify_seconds, &before.verify_seconds),
        "commit": delta(&now.commit_seconds, &before.commit_seconds),
        "sync": delta(&now.sync_seconds, &before.sync_seconds),
    })
}

/// In a fresh process: verify hit, miss and 50/50 on the store, against the limit holding
/// the same `n` keys.
fn verify_child(dir: &Path, n: usize) {
    let store = open_verified(dir);
    let mut rng = StdRng::seed_from_u64(0x5ca1e);
    let hit_tokens: Vec<String> = (0..HIT_SAMPLE.min(n / 4))
        .map(|_| secret(plain_key(&mut rng, n)))
        .collect();
    let miss_tokens: Vec<String> = (0..MISSES.min(n)).map(|_| fake_token(&mut rng)).collect();
    let hit_q: Vec<&str> = hit_tokens.iter().map(String::as_str).collect();
    let miss_q: Vec<&str> = miss_tokens.iter().map(String::as_str).collect();
    let mixed_q: Vec<&str> = (0..hit_q.len().max(miss_q.len()) * 2)
        .map(|i| {
            if rng.random_bool(0.5) {
                hit_q[i % hit_q.len()]
            } else {
                miss_q[i % miss_q.len()]
            }
        })
        .collect();
    let t = Instant::now();
    let limit: HashMap<[u8; 32], u64> = (0..n).map(|i| (peer_hash(&secret(i)), i as u64)).collect();
    let limit_build = t.elapsed();

    let kl_make = || |t: &str| store.verify(t, IpAddr::V4(CLIENT)).is_ok();
    let limit_make = || |t: &str| limit.contains_key(&peer_hash(t));
    check_answers("keyledger", &kl_make, &hit_q, &miss_q);
    check_answers("limit", &limit_make, &hit_q, &miss_q);
    let workloads: [(&str, &[&str]); 3] = [("hit", &hit_q), ("miss", &miss_q), ("mixed", &mixed_q)];
    let mut samples: HashMap<(&str, &str), Vec<f64>> = HashMap::new();
    for round in 0..VERIFY_ROUNDS {
        eprintln!("  verify round {}/{VERIFY_ROUNDS}", round + 1);
        for (w, q) in workloads {
            let mut push = |system, ns| samples.entry((system, w)).or_default().push(ns);
            push("keyledger", ns_per_op(&kl_make, q, VERIFY_TIME));
            push("limit", ns_per_op(&limit_make, q, VERIFY_TIME));
        }
    }
    let system = |s: &str| {
        let mut v = serde_json::Map::new();
        for (w, _) in workloads {
            v.insert(format!("{w}_ns"), json!(median(&samples[&(s, w)])));
            v.insert(format!("{w}_ns_samples"), json!(samples[&(s, w)]));
        }
        Value::Object(v)
    };
    println!(
        "{}",
        json!({
            "keyledger": system("keyledger"),
            "limit": system("limit"),
            "live_keys": store.live_key_count(),
            "hits_sampled": hit_q.len(),
            "misses": miss_q.len(),
            "limit_build_s": limit_build.as_secs_f64(),
        })
    );
}

/// In a fresh process: `/auth` idle, then while [`CALLERS`] callers create keys across a
/// snapshot.
fn auth_child(dir: &Path, n: usize) {
    if trace::wanted() {
        trace::install_subscriber();
    }
    let store = Arc::new(open_verified(dir));
    let mut quiet = Disk::of(dir);
    let mut rng = StdRng::seed_from_u64(0xa074);
    let secrets: Vec<String> = (0..AUTH_CONNECTIONS)
        .map(|_| secret(plain_key(&mut rng, n)))
        .collect();
    let server = runtime("server");
    let addr = serve_keyledger(&server, Arc::clone(&store), &["127.0.0.1/32"]);
    let client = runtime("client");
    quiet.settle("idle");
    let idle_before = store.statistics();
    let idle = client.block_on(paced_auth(addr, secrets.clone(), AUTH_IDLE_TIME));
    let idle_timings = store_timings(&store.statistics(), &idle_before);
    eprintln!(
        "  /auth idle: p50 {:.0} us, p99 {:.0} us",
        idle.p50_us, idle.p99_us
    );

    // The store was opened from the snapshot the load closed with, at its head: the next
    // is due `SNAPSHOT_EVERY` records on. Keys without credits (a record each) are
    // imported up to `WINDOW_SHORT` records short of it.
    let opened_at = store.last_seq();
    let short = (SNAPSHOT_EVERY - WINDOW_SHORT) as usize;
    let net: IpNet = "10.0.0.0/8".parse().unwrap();
    let plain = |i: usize| NewKey::new(format!("svc-{i}")).role("reader").allow(net);
    import(&store, n, n + short, plain, |_| {});
    assert_eq!(store.last_seq(), opened_at + short as u64);
    quiet.settle("window");
    let before = store.statistics();
    let records_before = store.last_seq();
    let probe =
        trace::wanted().then(|| trace::probe(Arc::clone(&store), secrets[0].clone(), IpAddr::V4(CLIENT)));
    let asking = client.spawn(paced_auth(addr, secrets, WINDOW_TIME));
    let admin = Actor::admin("bench-admin");
    let creates = run_creates(CALLERS, WINDOW_TIME, usize::MAX, |t, i, _| {
        let new = NewKey::new(format!("window-{t}-{i}")).role("reader").allow(net);
        store.create_key(&admin, new).unwrap();
    });
    let during = client.block_on(asking).unwrap();
    if let Some((stop, handle)) = probe {
        stop.store(true, std::sync::atomic::Ordering::Release);
        handle.join().unwrap();
    }
    let after = store.statistics();
    eprintln!(
        "  /auth across a snapshot: p50 {:.0} us, p99 {:.0} us; creates p99 {:.1} ms, max {:.1} ms",
        during.p50_us,
        during.p99_us,
        creates.p99_us / 1e3,
        creates.max_us / 1e3
    );
    drop(client);
    drop(server);
    println!(
        "{}",
        json!({
            "idle": idle.json(),
            "during": during.json(),
            "creates": creates.json(),
            "records_before_window": records_before,
            "records_after_window": store.last_seq(),
            "snapshot_due_at": opened_at + SNAPSHOT_EVERY,
            "snapshots": snapshots(&after, Some(&before)),
            "store_timings_idle": idle_timings,
            "store_timings_window": store_timings(&after, &before),
            "live_keys": store.live_key_count(),
            "quiet_disk": quiet.report(),
        })
    );
}

/// In a fresh process: [`CALLERS`] callers make `n / 10` durable creates ([`CREATES`] at
/// 10M keys), for [`CREATE_CAP`] at most.
fn creates_child(dir: &Path, n: usize) {
    let traced = trace::wanted();
    if traced {
        trace::install_subscriber();
    }
    let store = Arc::new(open_verified(dir));
    let mut quiet = Disk::of(dir);
    let target = (n / 10).min(CREATES);
    quiet.settle("creates");
    let before = store.statistics();
    let records_before = store.last_seq();
    let net: IpNet = "10.0.0.0/8".parse().unwrap();
    let admin = Actor::admin("bench-admin");
    let probe = traced.then(|| {
        let made = store
            .create_key(&admin, NewKey::new("probe").role("reader").allow(net))
            .unwrap();
        trace::probe(
            Arc::clone(&store),
            made.key.expose_secret().to_owned(),
            IpAddr::V4(CLIENT),
        )
    });
    let started = Instant::now();
    let run = run_creates(CALLERS, CREATE_CAP, target.div_ceil(CALLERS), |t, i, _| {
        let new = NewKey::new(format!("new-{t}-{i}")).role("reader").allow(net);
        let asked = Instant::now();
        store.create_key(&admin, new).unwrap();
        trace::slow_create(traced, asked, started);
    });
    if let Some((stop, handle)) = probe {
        stop.store(true, std::sync::atomic::Ordering::Release);
        handle.join().unwrap();
    }
    let after = store.statistics();
    eprintln!(
        "  creates: {} in {:.0} s, {:.0}/s, p99 {:.1} ms, max {:.1} ms",
        run.ops,
        run.secs,
        run.ops_per_s,
        run.p99_us / 1e3,
        run.max_us / 1e3
    );
    println!(
        "{}",
        json!({
            "target": target,
            "created": run.ops,
            "stopped_by_time_cap": run.ops < target,
            "run": run.json(),
            "records_before": records_before,
            "snapshots": snapshots(&after, Some(&before)),
            "store_timings": store_timings(&after, &before),
            "live_keys": store.live_key_count(),
            "quiet_disk": quiet.report(),
        })
    );
}

// ---------------------------------------------------------------------------------------
// Report.

fn print_table(r: &Value) {
    let num = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    let mc = &r["machine"];
    println!();
    println!(
        "keyledger scale: {} keys; {} ({} cores), linux {}; {:.0} s",
        r["keys"],
        mc["cpu"].as_str().unwrap_or("?"),
        mc["cores"],
        mc["kernel"].as_str().unwrap_or("?"),
        num(&r["elapsed_s"]),
    );
    let (l, m, o, s) = (&r["load"], &r["memory"], &r["open"], &r["snapshot"]);
    let (v, a, c) = (&r["verify"], &r["auth"], &r["create"]);
    let rows: Vec<(String, String)> = vec![
        (
            "load through import_keys, keys/s".into(),
            format!("{:.0}", num(&l["keys_per_s"])),
        ),
        (
            "resident bytes / live key: loading (peak)".into(),
            format!(
                "{:.0} ({:.0})",
                num(&m["bytes_per_key_loading"]),
                num(&m["peak_bytes_per_key_loading"])
            ),
        ),
        (
            "  reopened from snapshot: at open / verified (peak)".into(),
            format!(
                "{:.0} / {:.0} ({:.0})",
                num(&m["bytes_per_key_reopened_from_snapshot"]),
                num(&m["bytes_per_key_reopened_from_snapshot_verified"]),
                num(&m["peak_bytes_per_key_snapshot_open"])
            ),
        ),
        (
            "  reopened by a full replay (peak)".into(),
            format!(
                "{:.0} ({:.0})",
                num(&m["bytes_per_key_reopened_full_replay"]),
                num(&m["peak_bytes_per_key_full_replay"])
            ),
        ),
        (
            "  a raw scan of the log alone, per record".into(),
            format!("{:.0}", num(&m["bytes_per_record_raw_scan"])),
        ),
        (
            format!(
                "open {} events: full replay / snapshot / raw scan, ms",
                o["events"]
            ),
            format!(
                "{:.0} / {:.0} / {:.0}",
                num(&o["full_replay_ms"]),
                num(&o["snapshot_open_ms"]),
                num(&o["raw_scan_ms"])
            ),
        ),
        (
            "first open after the writes, ms".into(),
            format!("{:.0}", num(&o["first_open_after_writes"]["open_ms"])),
        ),
        (
            "snapshot: write s (while creating), last MB".into(),
            format!("{:.2}, {:.0}", num(&s["write_s"]), num(&s["bytes"]) / 1e6),
        ),
        (
            "verify hit / miss / 50-50, ns (limit)".into(),
            format!(
                "{:.0} / {:.0} / {:.0} ({:.0} / {:.0} / {:.0})",
                num(&v["keyledger"]["hit_ns"]),
                num(&v["keyledger"]["miss_ns"]),
                num(&v["keyledger"]["mixed_ns"]),
                num(&v["limit"]["hit_ns"]),
                num(&v["limit"]["miss_ns"]),
                num(&v["limit"]["mixed_ns"])
            ),
        ),
        (
            "/auth p50 / p99 us: idle; across a snapshot".into(),
            format!(
                "{:.0} / {:.0}; {:.0} / {:.0}",
                num(&a["idle"]["p50_us"]),
                num(&a["idle"]["p99_us"]),
                num(&a["during"]["p50_us"]),
                num(&a["during"]["p99_us"])
            ),
        ),
        (
            format!(
                "creates x{CALLERS} in that window: ops/s, p99 / max ms ({} snapshots)",
                a["snapshots"]["count"]
            ),
            format!(
                "{:.0}, {:.1} / {:.1}",
                num(&a["creates"]["ops_per_s"]),
                num(&a["creates"]["p99_us"]) / 1e3,
                num(&a["creates"]["max_us"]) / 1e3
            ),
        ),
        (
            format!(
                "{} creates x{CALLERS}: ops/s, p99 / max ms ({} snapshots{})",
                c["created"],
                c["snapshots"]["count"],
                if c["stopped_by_time_cap"] == json!(true) {
                    ", stopped by the time cap"
                } else {
                    ""
                }
            ),
            format!(
                "{:.0}, {:.1} / {:.1}",
                num(&c["run"]["ops_per_s"]),
                num(&c["run"]["p99_us"]) / 1e3,
                num(&c["run"]["max_us"]) / 1e3
            ),
        ),
    ];
    let w = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    for (label, value) in &rows {
        println!("{label:w$}  {value}");
    }
    println!();
    println!("ratios at {} keys:", r["ratios_at_keys"]);
    for (k, x) in r["ratios"].as_object().unwrap() {
        let x = x
            .as_f64()
            .map_or_else(|| "null".to_owned(), |x| format!("{x:.2}"));
        println!("  {k:w$}  {x}", w = w - 2);
    }
}
