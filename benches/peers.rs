//! keyledger side by side with what a user would pick instead, in one run on one machine
//! (in the style of redb's comparison benchmarks):
//!
//! - keyledger: event log in sled, projections in memory;
//! - SQLite (rusqlite, bundled): WAL, `synchronous=FULL`, a `WITHOUT ROWID` keys table keyed
//!   by the 32-byte blake3 hash, one transaction per write, verify = blake3 + a cached
//!   prepared `SELECT` by primary key;
//! - sled: a plain state table (hash -> record), `flush()` per write, verify = blake3 +
//!   `Tree::get`;
//! - the limit: blake3 of the token + one std `HashMap<[u8; 32], u64>` lookup.
//!
//! `cargo bench --bench peers` runs with 1M keys, `-- --quick` with 100k (`-- --keys N`
//! overrides both; `-- --keep-dir` keeps the stores for profiling). Prints one table and
//! writes `target/bench/peers.json`. The machine is shared and noisy: read the ratios,
//! which compare figures taken in the same run.
//!
//! Every engine's load, each create run and the opens start from a quiet disk
//! (`benches/common/disk.rs`: `sync`, then up to `-- --quiet-timeout SECS`, 60 by default,
//! for the device to be idle for a second), so that no engine's figures carry the
//! background writes of the phase before; `quiet_disk` in the report says how long each
//! wait took and whether the device got quiet. The engines share one process and one
//! directory; what keyledger's store does in the background while the others run (it
//! stays open) is not waited for.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/disk.rs"]
mod disk;
#[path = "common/workload.rs"]
mod workload;

use std::collections::HashMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use keyledger::{
    Actor, Credits, ExistingKey, IpNet, KEY_LEN, KeyStore, MAX_CREDITS, NewKey, Rejection, Witness,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

use disk::Disk;
use workload::{
    BASE62, BENCH_LIMIT, CACHE_BYTES, CLIENT, SNAPSHOT_EVERY, bench_key, check_answers, fake_token, in_child,
    median, ms, ns_per_op, peer_hash, raw_scan, rss_bytes, run_creates, run_verify,
};

/// Concurrent creators used to fill keyledger (each batch the writer flushes holds up to
/// this many creations).
const LOAD_THREADS: usize = 128;
const NET: ([u8; 4], u8) = ([10, 0, 0, 0], 8);
const CALLERS: [usize; 3] = [1, 8, 32];
/// The most creates one caller makes in a timed run.
const CALLS_EACH: usize = 1_000_000;
const SYSTEMS: [&str; 4] = ["keyledger", "sqlite", "sled", "limit"];

struct Mode {
    name: &'static str,
    keys: usize,
    misses: usize,
    rounds: usize,
    verify_time: Duration,
    create_time: Duration,
    /// How long 32 callers create while snapshots are taken.
    stall_time: Duration,
    open_reps: usize,
}

impl Mode {
    fn from_args() -> Mode {
        let args: Vec<String> = std::env::args().collect();
        let quick = args.iter().any(|a| a == "--quick");
        let keys = args
            .iter()
            .position(|a| a == "--keys")
            .and_then(|i| args.get(i + 1))
            .map(|n| n.parse::<usize>().expect("--keys takes a number"));
        let mut mode = if quick {
            Mode {
                name: "quick",
                keys: 100_000,
                misses: 100_000,
                rounds: 3,
                verify_time: Duration::from_millis(250),
                create_time: Duration::from_millis(1500),
                stall_time: Duration::from_secs(5),
                open_reps: 2,
            }
        } else {
            Mode {
                name: "full",
                keys: 1_000_000,
                misses: 200_000,
                rounds: 5,
                verify_time: Duration::from_millis(500),
                create_time: Duration::from_secs(4),
                stall_time: Duration::from_secs(20),
                open_reps: 2,
            }
        };
        if let Some(n) = keys {
            mode.keys = n.max(1000);
            mode.misses = mode.misses.min(mode.keys);
        }
        mode
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if workload::shared_child(&args) {
        return;
    }
    if args.get(1).map(String::as_str) == Some("__rss_limited") {
        return rss_limited_child(Path::new(&args[2]), args[3].parse().unwrap());
    }
    let mode = Mode::from_args();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let keep = std::env::args().any(|a| a == "--keep-dir");
    // Every engine's write phase starts from a quiet disk, so that none is measured on the
    // background work of the one before.
    let mut quiet = Disk::of(tmp.path());
    let kl_dir = tmp.path().join("keyledger");
    let n = mode.keys;
    eprintln!(
        "peers: {} mode, {n} keys, temp dir {}",
        mode.name,
        tmp.path().display()
    );

    // (d) memory, while (a)'s keyledger store is filled: the token buffer is allocated and
    // touched first so that only the store's growth is counted.
    let mut token_buf = vec![b'x'; n * KEY_LEN];
    quiet.settle("keyledger_load");
    let rss_start = rss_bytes();
    let store = KeyStore::builder()
        .cache_bytes(CACHE_BYTES)
        .snapshot_every(SNAPSHOT_EVERY)
        .open(&kl_dir)
        .unwrap();
    let (rss_open, rss_loaded, load_time) = load_keyledger(&store, &mut token_buf);
    let tokens = String::from_utf8(token_buf).unwrap();
    let hits: Vec<&str> = (0..n).map(|i| &tokens[i * KEY_LEN..(i + 1) * KEY_LEN]).collect();
    assert_eq!(store.live_key_count(), n);
    eprintln!(
        "  keyledger: {n} keys created by {LOAD_THREADS} threads in {:.1} s",
        load_time.as_secs_f64()
    );

    let mut rng = StdRng::seed_from_u64(0x6b6c6b);
    let miss_tokens: Vec<String> = (0..mode.misses).map(|_| fake_token(&mut rng)).collect();
    let misses: Vec<&str> = miss_tokens.iter().map(String::as_str).collect();
    // Hits on keys that do not expire (as every key did before expiry existed), on keys
    // with a rate limit, and on keys that expire.
    let mut hit_q: Vec<&str> = hits.iter().step_by(4).copied().collect();
    hit_q.shuffle(&mut rng);
    let mut limited_q: Vec<&str> = hits.iter().skip(2).step_by(4).copied().collect();
    limited_q.shuffle(&mut rng);
    // One limited key, hammered by every thread: its cell is shared.
    let same_key_q: Vec<&str> = vec![limited_q[0]; 4096];
    let mut expiring_q: Vec<&str> = hits.iter().skip(1).step_by(2).copied().collect();
    expiring_q.shuffle(&mut rng);
    let mut miss_q = misses.clone();
    miss_q.shuffle(&mut rng);
    let mixed_q: Vec<&str> = (0..hit_q.len().max(miss_q.len()) * 2)
        .map(|i| {
            if rng.random_bool(0.5) {
                hit_q[i % hit_q.len()]
            } else {
                miss_q[i % miss_q.len()]
            }
        })
        .collect();
    let malformed_q: Vec<String> = hit_q
        .iter()
        .take(4096)
        .map(|t| {
            // One character changed: right length and alphabet, wrong checksum.
            let mut b = t.as_bytes().to_vec();
            b[20] = if b[20] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        })
        .collect();
    let malformed_q: Vec<&str> = malformed_q.iter().map(String::as_str).collect();

    // The peers hold the same keys.
    let hashes: Vec<[u8; 32]> = hits.iter().map(|t| peer_hash(t)).collect();
    let t = Instant::now();
    let limit: HashMap<[u8; 32], u64> = hashes.iter().enumerate().map(|(i, h)| (*h, i as u64)).collect();
    let limit_load = t.elapsed();
    let sqlite_path = tmp.path().join("sqlite.db");
    quiet.settle("sqlite_load");
    let t = Instant::now();
    load_sqlite(&sqlite_path, &hashes);
    let sqlite_load = t.elapsed();
    eprintln!("  sqlite: loaded in {:.1} s", sqlite_load.as_secs_f64());
    let sled_db = sled::Config::new()
        .path(tmp.path().join("sled"))
        .cache_capacity(CACHE_BYTES)
        .flush_every_ms(None)
        .open()
        .unwrap();
    let sled_tree = sled_db.open_tree("state").unwrap();
    quiet.settle("sled_load");
    let t = Instant::now();
    load_sled(&sled_db, &sled_tree, &hashes);
    let sled_load = t.elapsed();
    eprintln!("  sled: loaded in {:.1} s", sled_load.as_secs_f64());

    // (a) verify.
    let kl_make = || |t: &str| store.verify(t, IpAddr::V4(CLIENT)).is_ok();
    let sqlite_make = || {
        let conn = sqlite_reader(&sqlite_path);
        move |t: &str| sqlite_verify(&conn, t)
    };
    let sled_make = || |t: &str| sled_verify(&sled_tree, t);
    let limit_make = || |t: &str| limit.contains_key(&peer_hash(t));
    check_answers("keyledger", &kl_make, &hits, &misses);
    check_answers("sqlite", &sqlite_make, &hits, &misses);
    check_answers("sled", &sled_make, &hits, &misses);
    check_answers("limit", &limit_make, &hits, &misses);
    assert!(matches!(
        store.verify(malformed_q[0], IpAddr::V4(CLIENT)),
        Err(Rejection::Malformed(_))
    ));

    let workloads: [(&str, &[&str]); 3] = [("hit", &hit_q), ("miss", &miss_q), ("mixed", &mixed_q)];
    let mut samples: HashMap<(&str, &str), Vec<f64>> = HashMap::new();
    let vt = mode.verify_time;
    for round in 0..mode.rounds {
        eprintln!("  verify round {}/{}", round + 1, mode.rounds);
        for (w, q) in workloads {
            let mut push = |system, ns| samples.entry((system, w)).or_default().push(ns);
            push("keyledger", ns_per_op(&kl_make, q, vt));
            push("sqlite", ns_per_op(&sqlite_make, q, vt));
            push("sled", ns_per_op(&sled_make, q, vt));
            push("limit", ns_per_op(&limit_make, q, vt));
        }
        let ns = ns_per_op(&kl_make, &malformed_q, vt);
        samples.entry(("keyledger", "malformed")).or_default().push(ns);
        let ns = ns_per_op(&kl_make, &expiring_q, vt);
        samples.entry(("keyledger", "hit_expiring")).or_default().push(ns);
        let ns = ns_per_op(&kl_make, &limited_q, vt);
        samples.entry(("keyledger", "hit_limited")).or_default().push(ns);
        let ops = ops_2t(&kl_make, &limited_q, vt);
        samples
            .entry(("keyledger", "hit_limited_2t"))
            .or_default()
            .push(ops);
        let ops = ops_2t(&kl_make, &same_key_q, vt);
        samples
            .entry(("keyledger", "hit_limited_same_key_2t"))
            .or_default()
            .push(ops);
        let ns = ns_per_op(&kl_make, &same_key_q, vt);
        samples
            .entry(("keyledger", "hit_limited_same_key"))
            .or_default()
            .push(ns);
        let mut push2 = |system, ops| samples.entry((system, "mixed_2t")).or_default().push(ops);
        push2("keyledger", ops_2t(&kl_make, &mixed_q, vt));
        push2("sqlite", ops_2t(&sqlite_make, &mixed_q, vt));
        push2("sled", ops_2t(&sled_make, &mixed_q, vt));
        push2("limit", ops_2t(&limit_make, &mixed_q, vt));
    }
    let med = |system: &str, w: &str| median(&samples[&(system, w)]);
    let mut verify = serde_json::Map::new();
    for system in SYSTEMS {
        let mut v = json!({
            "hit_ns": med(system, "hit"),
            "miss_ns": med(system, "miss"),
            "mixed_ns": med(system, "mixed"),
            "mixed_1t_ops_per_s": 1e9 / med(system, "mixed"),
            "mixed_2t_ops_per_s": med(system, "mixed_2t"),
            "scaling_2t_vs_1t": med(system, "mixed_2t") * med(system, "mixed") / 1e9,
            "samples": {
                "hit_ns": samples[&(system, "hit")],
                "miss_ns": samples[&(system, "miss")],
                "mixed_ns": samples[&(system, "mixed")],
                "mixed_2t_ops_per_s": samples[&(system, "mixed_2t")],
            },
        });
        if system == "keyledger" {
            v["malformed_ns"] = json!(med(system, "malformed"));
            v["samples"]["malformed_ns"] = json!(samples[&(system, "malformed")]);
            v["hit_expiring_ns"] = json!(med(system, "hit_expiring"));
            v["samples"]["hit_expiring_ns"] = json!(samples[&(system, "hit_expiring")]);
            for w in ["hit_limited", "hit_limited_same_key"] {
                v[format!("{w}_ns")] = json!(med(system, w));
                v["samples"][format!("{w}_ns")] = json!(samples[&(system, w)]);
            }
            for w in ["hit_limited_2t", "hit_limited_same_key_2t"] {
                v[format!("{w}_ops_per_s")] = json!(med(system, w));
                v["samples"][format!("{w}_ops_per_s")] = json!(samples[&(system, w)]);
            }
        }
        verify.insert(system.to_owned(), v);
    }

    // (e) adopting existing keys: one import of 100k secrets outside keyledger's format,
    // into a store of its own, and what verifying them costs.
    quiet.settle("import");
    let import = import_rate(tmp.path(), mode.verify_time);
    eprintln!(
        "  import: {} keys/s",
        import["keys_per_s"].as_f64().unwrap_or(0.0) as u64
    );

    // (c) open a store holding N events, against a raw scan of the same sled tree.
    // A full replay has snapshots off; the default open loads the snapshot the writer
    // saved (every `SNAPSHOT_EVERY` records and at close) and replays the tail.
    // A witness one record behind the head, so that checking it reads the log.
    let witness = store.head();
    store
        .create_key(
            &Actor::admin("bench-admin"),
            NewKey::new("after the witness").role("reader"),
        )
        .unwrap();
    let events = store.last_seq();
    drop(store);
    let snapshot_bytes = std::fs::metadata(kl_dir.join("snapshot")).map_or(0, |m| m.len());
    // sled 0.34 writes its own page-table snapshot only when a database is opened, so the
    // first open after a writing session also recovers sled's log of that session.
    quiet.settle("open");
    let (first_open, first_from_snapshot) = time_open(&kl_dir, SNAPSHOT_EVERY, events, None);
    eprintln!("  first open after the writes: {:.0} ms", ms(first_open));
    let mut scans = Vec::new();
    let mut fulls = Vec::new();
    let mut snaps = Vec::new();
    let mut witnessed = Vec::new();
    let mut from_snapshot = true;
    for _ in 0..mode.open_reps {
        let scan = raw_scan(&kl_dir);
        assert_eq!(scan.records, events);
        scans.push(scan);
        let (took, snap) = time_open(&kl_dir, 0, events, None);
        assert!(!snap);
        fulls.push(took);
        let (took, snap) = time_open(&kl_dir, SNAPSHOT_EVERY, events, None);
        from_snapshot &= snap;
        snaps.push(took);
        witnessed.push(time_open(&kl_dir, SNAPSHOT_EVERY, events, Some(witness)).0);
    }
    let witnessed = witnessed.iter().min().copied().unwrap();
    let scan = scans.iter().min_by_key(|s| s.open + s.iterate).unwrap();
    let full = fulls.iter().min().copied().unwrap();
    let snap = snaps.iter().min().copied().unwrap();
    let kl = kl_dir.to_str().unwrap();
    let reopen_full_child = in_child(&["__open", kl, "0"]);
    let reopen_snapshot_child = in_child(&["__open", kl, &SNAPSHOT_EVERY.to_string()]);
    let scan_child = in_child(&["__scan", kl]);
    // RSS moves with the allocator's arenas: the median of three runs of each.
    let grew = |i: usize, kind: u64| {
        let dir = tmp.path().join(format!("rss-{i}-{kind}"));
        f64_of(&in_child(&["__rss_limited", dir.to_str().unwrap(), &kind.to_string()])["grew_bytes"])
    };
    let (mut per_limited, mut per_credited) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let plain = grew(i, 0);
        per_limited.push((grew(i, 2) - plain) / RSS_LIMITED_KEYS as f64);
        per_credited.push((grew(i, 1) - plain) / RSS_LIMITED_KEYS as f64);
    }
    let bytes_per_limited_key = median(&per_limited);
    let bytes_per_limited_credited_key = median(&per_credited);
    per_limited.sort_by(f64::total_cmp);
    per_credited.sort_by(f64::total_cmp);
    eprintln!(
        "  open: full replay {:.0} ms, {} {:.0} ms, raw scan {:.0} ms",
        ms(full),
        if from_snapshot {
            "from snapshot"
        } else {
            "default (no snapshot found!)"
        },
        ms(snap),
        ms(scan.open + scan.iterate)
    );

    // (b) durable creates with 1, 8 and 32 callers, on the populated stores.
    let store = KeyStore::builder()
        .cache_bytes(CACHE_BYTES)
        .snapshot_every(SNAPSHOT_EVERY)
        .open(&kl_dir)
        .unwrap();
    let net: IpNet = "10.0.0.0/8".parse().unwrap();
    let admin = Actor::admin("bench-admin");
    let writer = Mutex::new(sqlite_writer(&sqlite_path));
    let mut create: HashMap<&str, serde_json::Map<String, Value>> = HashMap::new();
    let mut disk = serde_json::Map::new();
    // Interleaved by caller count, each group next to a probe of the disk's fdatasync: on
    // a shared virtual disk its cost drifts by 100x over minutes.
    for callers in CALLERS {
        quiet.settle(&format!("fdatasync_probe_x{callers}"));
        disk.insert(format!("before_x{callers}"), disk_sync_latency(tmp.path()));
        for system in ["keyledger", "sqlite", "sled"] {
            quiet.settle(&format!("create_{system}_x{callers}"));
            let r = match system {
                "keyledger" => run_creates(callers, mode.create_time, CALLS_EACH, |t, i, _| {
                    let new = NewKey::new(format!("new-{t}-{i}")).role("reader").allow(net);
                    store.create_key(&admin, new).unwrap();
                }),
                "sqlite" => run_creates(callers, mode.create_time, CALLS_EACH, |t, i, rng| {
                    let token = fake_token(rng);
                    let hash = peer_hash(&token);
                    let conn = writer.lock().unwrap();
                    sqlite_insert(&conn, &hash, rng.random(), &format!("new-{t}-{i}"));
                }),
                _ => run_creates(callers, mode.create_time, CALLS_EACH, |t, i, rng| {
                    let token = fake_token(rng);
                    let hash = peer_hash(&token);
                    sled_tree
                        .insert(hash, sled_record(rng.random(), &format!("new-{t}-{i}")))
                        .unwrap();
                    sled_db.flush().unwrap();
                }),
            };
            eprintln!(
                "  create {system} x{callers}: {:.0}/s p50 {:.0} us p99 {:.0} us",
                r.ops_per_s, r.p50_us, r.p99_us
            );
            create
                .entry(system)
                .or_default()
                .insert(callers.to_string(), r.json());
        }
    }
    let fsync_p50s: Vec<f64> = disk
        .values()
        .map(|d| d["fdatasync_4k_p50_us"].as_f64().unwrap())
        .collect();
    disk.insert(
        "fdatasync_4k_p50_us_median".to_owned(),
        json!(median(&fsync_p50s)),
    );
    let create: serde_json::Map<String, Value> = create
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::Object(v)))
        .collect();
    // (e) the worst create while snapshots are taken: 32 callers for long enough that the
    // writer passes several snapshot points (every SNAPSHOT_EVERY records).
    let stall_time = mode.stall_time;
    quiet.settle("create_keyledger_during_snapshots");
    let stall_before = store.last_seq();
    let stall = run_creates(32, stall_time, CALLS_EACH, |t, i, _| {
        let new = NewKey::new(format!("stall-{t}-{i}")).role("reader").allow(net);
        store.create_key(&admin, new).unwrap();
    });
    let snapshots_passed = (store.last_seq() / SNAPSHOT_EVERY) - (stall_before / SNAPSHOT_EVERY);
    eprintln!(
        "  create x32 over {:.0} s from {stall_before} records: {:.0}/s p99 {:.0} us max {:.1} ms, {snapshots_passed} snapshots",
        stall_time.as_secs_f64(),
        stall.ops_per_s,
        stall.p99_us,
        stall.max_us / 1e3
    );
    drop(store);

    let kl = &verify["keyledger"];
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
    let cps = |s: &str, c: usize| f(&create[s][&c.to_string()], "ops_per_s");
    let bytes_per_key = (rss_loaded.saturating_sub(rss_open)) as f64 / n as f64;
    let ratios = json!({
        "verify_vs_limit": f(kl, "mixed_ns") / f(&verify["limit"], "mixed_ns"),
        "verify_hit_vs_limit": f(kl, "hit_ns") / f(&verify["limit"], "hit_ns"),
        "verify_miss_vs_limit": f(kl, "miss_ns") / f(&verify["limit"], "miss_ns"),
        "verify_expiring_vs_plain_hit": f(kl, "hit_expiring_ns") / f(kl, "hit_ns"),
        "verify_limited_vs_verify": f(kl, "hit_limited_ns") / f(kl, "hit_ns"),
        "verify_limited_2t_vs_1t": f(kl, "hit_limited_2t_ops_per_s") * f(kl, "hit_limited_ns") / 1e9,
        "verify_limited_same_key_2t_vs_1t": f(kl, "hit_limited_same_key_2t_ops_per_s")
            * f(kl, "hit_limited_same_key_ns")
            / 1e9,
        "import_keys_per_s": f(&import, "keys_per_s"),
        "sqlite_vs_verify": f(&verify["sqlite"], "mixed_ns") / f(kl, "mixed_ns"),
        "sled_vs_verify": f(&verify["sled"], "mixed_ns") / f(kl, "mixed_ns"),
        "verify_2t_vs_1t": f(kl, "mixed_2t_ops_per_s") / f(kl, "mixed_1t_ops_per_s"),
        "create32_vs_sqlite": cps("keyledger", 32) / cps("sqlite", 32),
        "create1_vs_sqlite": cps("keyledger", 1) / cps("sqlite", 1),
        format!("create_max_ms_{}", key_label(n)): stall.max_us / 1e3,
        format!("create_p99_ms_{}", key_label(n)): stall.p99_us / 1e3,
        "open_vs_scan": full.as_secs_f64() / (scan.open + scan.iterate).as_secs_f64(),
        "open_vs_scan_hash": full.as_secs_f64() / (scan.open + scan.iterate_hash).as_secs_f64(),
        "snapshot_open_vs_full": if from_snapshot {
            json!(snap.as_secs_f64() / full.as_secs_f64())
        } else {
            Value::Null
        },
        "bytes_per_key": bytes_per_key,
        "bytes_per_limited_key": bytes_per_limited_key,
        "bytes_per_limited_credited_key": bytes_per_limited_credited_key,
    });
    eprintln!(
        "  bytes per key with a limit: {per_limited:.0?}; with a limit and credits: {per_credited:.0?}"
    );
    let report = json!({
        "mode": mode.name,
        "keys": n,
        "machine": common::machine(),
        "settings": {
            "sled_cache_bytes": CACHE_BYTES,
            "keyledger_load_threads": LOAD_THREADS,
            "keyledger_snapshot_every": SNAPSHOT_EVERY,
            "sqlite": "bundled; journal_mode=WAL; synchronous=FULL; WITHOUT ROWID table keyed by \
                       blake3 hash; default page cache; verify = prepare_cached SELECT by key, one \
                       connection per thread; creates = one Mutex<Connection>, autocommit INSERT",
            "sled": "state tree hash -> record; flush() after every insert",
            "durability": "sqlite: fdatasync of the WAL per commit; keyledger: sled flush() then \
                           fdatasync of sled's data file, once per group commit; sled peer: \
                           flush() only, which in sled 0.34 on Linux ends with sync_file_range \
                           (no drive cache flush, no metadata): weaker than the other two",
            "limit": "blake3 + std HashMap<[u8; 32], u64> (SipHash)",
            "verify": "client 10.1.2.3, every key whitelists 10.0.0.0/8; mixed = random 50/50 \
                       hits and misses; figures are medians of rounds",
            "verify_time_per_sample_s": mode.verify_time.as_secs_f64(),
            "rounds": mode.rounds,
            "create_time_per_run_s": mode.create_time.as_secs_f64(),
            "misses": mode.misses,
        },
        "load": {
            "keyledger_s": load_time.as_secs_f64(),
            "keyledger_keys_per_s": n as f64 / load_time.as_secs_f64(),
            "sqlite_s": sqlite_load.as_secs_f64(),
            "sled_s": sled_load.as_secs_f64(),
            "limit_s": limit_load.as_secs_f64(),
        },
        "verify": verify,
        "create": create,
        "create_during_snapshots": {
            "run": stall.json(),
            "records_before": stall_before,
            "snapshots_passed": snapshots_passed,
            "snapshot_every": SNAPSHOT_EVERY,
        },
        "open": {
            "events": events,
            "first_open_after_writes_ms": ms(first_open),
            "first_open_from_snapshot": first_from_snapshot,
            "full_replay_ms": ms(full),
            "full_replay_ms_samples": fulls.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "snapshot_open_ms": ms(snap),
            "snapshot_open_ms_samples": snaps.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "snapshot_open_with_witness_ms": ms(witnessed),
            "opened_from_snapshot": from_snapshot,
            "snapshot_every": SNAPSHOT_EVERY,
            "snapshot_file_bytes": snapshot_bytes,
            "raw_scan_ms": ms(scan.open + scan.iterate),
            "raw_scan_and_hash_ms": ms(scan.open + scan.iterate_hash),
            "raw_scan_sled_open_ms": ms(scan.open),
            "raw_scan_iterate_ms": ms(scan.iterate),
            "raw_scan_ms_samples": scans.iter().map(|s| ms(s.open + s.iterate)).collect::<Vec<_>>(),
            "raw_scan_sled_open_ms_samples": scans.iter().map(|s| ms(s.open)).collect::<Vec<_>>(),
            "log_value_bytes": scan.bytes,
        },
        "memory": {
            "sled_cache_bytes": CACHE_BYTES,
            "rss_start_bytes": rss_start,
            "rss_after_open_empty_bytes": rss_open,
            "rss_after_load_bytes": rss_loaded,
            "empty_store_bytes": rss_open.saturating_sub(rss_start),
            "bytes_per_key": bytes_per_key,
            "bytes_per_key_excluding_cache": (rss_loaded.saturating_sub(rss_open) as f64
                - CACHE_BYTES as f64).max(0.0) / n as f64,
            "reopen_full_replay_child": reopen_full_child,
            "reopen_from_snapshot_child": reopen_snapshot_child,
            "sled_scan_child": scan_child,
        },
        "disk": disk,
        "quiet_disk": quiet.report(),
        "import": import,
        "ratios": ratios,
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    print_table(&report);
    let path = common::write_report("peers.json", &report);
    println!("wrote {}", path.display());
    if keep {
        println!("kept {}", tmp.keep().display());
    }
}

// ---------------------------------------------------------------------------------------
// Keys.

/// `1m`, `3m`, `100k`: how a key count names a figure.
fn key_label(n: usize) -> String {
    if n.is_multiple_of(1_000_000) {
        format!("{}m", n / 1_000_000)
    } else if n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// Whether a stored `[a, b, c, d, prefix]` network admits the client.
#[inline]
fn net_admits(net: &[u8]) -> bool {
    let (Ok(addr), Some(&prefix)) = (<[u8; 4]>::try_from(&net[..4]), net.get(4)) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    (u32::from_be_bytes(addr) ^ u32::from(CLIENT)) & mask == 0
}

// ---------------------------------------------------------------------------------------
// Adopting existing keys.

/// Keys adopted in one import.
const IMPORT_KEYS: usize = 100_000;

/// Imports [`IMPORT_KEYS`] secrets outside keyledger's format into a new store, as one
/// commit; returns the rate, and the verify cost of an adopted secret (blake3 after a
/// failed format check) next to a malformed token's in the same store.
fn import_rate(tmp: &Path, time: Duration) -> Value {
    let store = KeyStore::builder()
        .cache_bytes(CACHE_BYTES)
        .open(tmp.join("import"))
        .unwrap();
    let mut rng = StdRng::seed_from_u64(0x1a2b);
    let secrets: Vec<String> = (0..IMPORT_KEYS)
        .map(|_| {
            (0..32)
                .map(|_| char::from(BASE62[rng.random_range(0..62)]))
                .collect::<String>()
        })
        .collect();
    let t = Instant::now();
    let keys: Vec<ExistingKey> = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let new = NewKey::new(format!("adopted-{i}")).role("reader");
            ExistingKey::with_secret(new, &format!("sk_{s}")).unwrap()
        })
        .collect();
    let ids = store.import_keys(&Actor::admin("bench-admin"), keys).unwrap();
    let took = t.elapsed();
    assert_eq!(ids.len(), IMPORT_KEYS);
    let adopted: Vec<String> = secrets.iter().map(|s| format!("sk_{s}")).collect();
    let adopted_q: Vec<&str> = adopted.iter().map(String::as_str).collect();
    let make = || |t: &str| store.verify(t, IpAddr::V4(CLIENT)).is_ok();
    check_answers("keyledger (adopted)", &make, &adopted_q[..100], &[]);
    json!({
        "keys": IMPORT_KEYS,
        "secs": took.as_secs_f64(),
        "keys_per_s": IMPORT_KEYS as f64 / took.as_secs_f64(),
        "adopted_hit_ns": ns_per_op(&make, &adopted_q, time),
        "note": "one import_keys call (validation, hashing, one durable commit) of secrets \
                 outside keyledger's format; adopted_hit_ns verifies them (format check, \
                 then blake3 and the lookup)",
    })
}

// Loading.

/// Fills `store` with `tokens.len() / KEY_LEN` keys of the mix ([`bench_key`]) from
/// [`LOAD_THREADS`] concurrent creators, writing each secret into its slot. Returns RSS just before and just after, and
/// the time taken.
fn load_keyledger(store: &KeyStore, tokens: &mut [u8]) -> (u64, u64, Duration) {
    let per = tokens.len().div_ceil(KEY_LEN * LOAD_THREADS) * KEY_LEN;
    let start = Barrier::new(LOAD_THREADS + 1);
    let admin = Actor::admin("bench-admin");
    let creators = tokens.chunks(per).len();
    let (before, t) = std::thread::scope(|s| {
        for (t, chunk) in tokens.chunks_mut(per).enumerate() {
            let (start, admin) = (&start, &admin);
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn_scoped(s, move || {
                    start.wait();
                    for (i, slot) in chunk.chunks_mut(KEY_LEN).enumerate() {
                        let created = store.create_key(admin, bench_key(t * per / KEY_LEN + i)).unwrap();
                        slot.copy_from_slice(created.key.expose_secret().as_bytes());
                    }
                })
                .unwrap();
        }
        for _ in creators..LOAD_THREADS {
            let start = &start;
            s.spawn(move || start.wait());
        }
        // The creators are spawned and parked: their stacks are not the store's.
        let before = rss_bytes();
        let t = Instant::now();
        start.wait();
        (before, t)
    });
    // The scope has joined every creator.
    let took = t.elapsed();
    (before, rss_bytes(), took)
}

fn sqlite_open(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    let journal: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    conn.execute_batch("PRAGMA synchronous=FULL").unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn
}

fn sqlite_writer(path: &Path) -> Connection {
    sqlite_open(path)
}

fn sqlite_reader(path: &Path) -> Connection {
    sqlite_open(path)
}

const SQLITE_INSERT: &str = "INSERT INTO keys (hash, id, name, roles, whitelist, created_by, \
                             created_at) VALUES (?1, ?2, ?3, 'reader', ?4, 'bench-admin', ?5)";

fn sqlite_insert(conn: &Connection, hash: &[u8; 32], id: u64, name: &str) {
    let net = [NET.0[0], NET.0[1], NET.0[2], NET.0[3], NET.1];
    let mut st = conn.prepare_cached(SQLITE_INSERT).unwrap();
    st.execute(params![&hash[..], id as i64, name, &net[..], now_micros()])
        .unwrap();
}

fn load_sqlite(path: &Path, hashes: &[[u8; 32]]) {
    let conn = sqlite_open(path);
    conn.execute_batch(
        "CREATE TABLE keys (
            hash BLOB PRIMARY KEY NOT NULL,
            id INTEGER NOT NULL,
            name TEXT NOT NULL,
            roles TEXT NOT NULL,
            whitelist BLOB NOT NULL,
            created_by TEXT NOT NULL,
            created_at INTEGER NOT NULL
        ) WITHOUT ROWID",
    )
    .unwrap();
    // Bulk load: one transaction (the creates workload measures one per write).
    conn.execute_batch("BEGIN").unwrap();
    for (i, h) in hashes.iter().enumerate() {
        sqlite_insert(&conn, h, i as u64, &format!("svc-{i}"));
    }
    conn.execute_batch("COMMIT").unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
}

#[inline]
fn sqlite_verify(conn: &Connection, token: &str) -> bool {
    let hash = peer_hash(token);
    let mut st = conn
        .prepare_cached("SELECT id, roles, whitelist FROM keys WHERE hash = ?1")
        .unwrap();
    let mut rows = st.query([&hash[..]]).unwrap();
    match rows.next().unwrap() {
        Some(row) => {
            black_box(row.get_ref(0).unwrap().as_i64().unwrap());
            black_box(row.get_ref(1).unwrap().as_str().unwrap());
            net_admits(row.get_ref(2).unwrap().as_blob().unwrap())
        }
        None => false,
    }
}

/// The sled peer's record: id, network, name, roles.
fn sled_record(id: u64, name: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + name.len());
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&NET.0);
    v.push(NET.1);
    v.extend_from_slice(&now_micros().to_le_bytes());
    v.push(name.len() as u8);
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(b"\x06reader\x0bbench-admin");
    v
}

fn load_sled(db: &sled::Db, tree: &sled::Tree, hashes: &[[u8; 32]]) {
    for (c, chunk) in hashes.chunks(10_000).enumerate() {
        let mut batch = sled::Batch::default();
        for (i, h) in chunk.iter().enumerate() {
            let id = (c * 10_000 + i) as u64;
            batch.insert(&h[..], sled_record(id, &format!("svc-{id}")));
        }
        tree.apply_batch(batch).unwrap();
    }
    db.flush().unwrap();
}

#[inline]
fn sled_verify(tree: &sled::Tree, token: &str) -> bool {
    let hash = peer_hash(token);
    match tree.get(hash).unwrap() {
        Some(v) => {
            black_box(&v[..8]);
            net_admits(&v[8..13])
        }
        None => false,
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

// ---------------------------------------------------------------------------------------
// Measuring.

/// Two threads verifying at once, each its own `make()`; returns calls per second.
fn ops_2t<M, F>(make: &M, queries: &[&str], time: Duration) -> f64
where
    M: Fn() -> F + Sync,
    F: FnMut(&str) -> bool,
{
    let go = Barrier::new(2);
    let results: Vec<(u64, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let go = &go;
                s.spawn(move || {
                    let mut f = make();
                    go.wait();
                    run_verify(&mut f, queries, t * queries.len() / 2, time)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    results
        .iter()
        .map(|(calls, took)| *calls as f64 / took.as_secs_f64())
        .sum()
}

/// What a durable write costs this disk: 4 KiB overwritten in place, then `fdatasync`
/// (SQLite's commit with `synchronous=FULL`, keyledger's group commit). sled 0.34's own
/// `flush` uses `sync_file_range` on Linux, which neither flushes the drive's cache nor
/// writes metadata.
fn disk_sync_latency(dir: &Path) -> Value {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fsync-probe");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    file.set_len(1 << 20).unwrap();
    file.sync_all().unwrap();
    let block = [0x5a_u8; 4096];
    let mut lat = Vec::new();
    let start = Instant::now();
    // Bounded: 300 writes or a third of a second.
    for i in 0..300u64 {
        let t = Instant::now();
        file.write_all_at(&block, (i % 256) * 4096).unwrap();
        file.sync_data().unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        if start.elapsed() >= Duration::from_millis(300) {
            break;
        }
    }
    lat.sort_by(f64::total_cmp);
    json!({
        "fdatasync_4k_p50_us": lat[lat.len() / 2],
        "fdatasync_4k_p99_us": lat[(lat.len() * 99 / 100).min(lat.len() - 1)],
        "samples": lat.len(),
    })
}

/// Opens the store in `dir` (snapshots every `snapshot_every` records; 0 = off, a full
/// replay); returns the time taken and whether it was opened from a snapshot.
fn time_open(dir: &Path, snapshot_every: u64, events: u64, witness: Option<Witness>) -> (Duration, bool) {
    let t = Instant::now();
    let mut builder = KeyStore::builder()
        .cache_bytes(CACHE_BYTES)
        .snapshot_every(snapshot_every);
    if let Some(w) = witness {
        builder = builder.expect_head(w);
    }
    let store = builder.open(dir).unwrap();
    let took = t.elapsed();
    assert_eq!(store.last_seq(), events);
    (took, store.opened_from_snapshot())
}

// ---------------------------------------------------------------------------------------
// Memory.

/// Keys each half of the limited-memory children imports.
const RSS_LIMITED_KEYS: usize = 200_000;

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// In a fresh process: how much RSS grows while a new store imports [`RSS_LIMITED_KEYS`]
/// plain keys and as many more: plain (`kind` 0), each with a rate limit and credits (1),
/// or with a rate limit only (2). Children import the same number of keys, so every table
/// has the same capacity and the difference is what the limits (and credits) cost:
/// `bytes_per_limited_key` (and `bytes_per_limited_credited_key`).
fn rss_limited_child(dir: &Path, kind: u64) {
    let store = KeyStore::builder().cache_bytes(CACHE_BYTES).open(dir).unwrap();
    let mut rng = StdRng::seed_from_u64(kind + 11);
    let before = rss_bytes();
    for half in [0, kind] {
        for batch in 0..RSS_LIMITED_KEYS / 10_000 {
            let keys = (0..10_000)
                .map(|i| {
                    let mut new = NewKey::new(format!("k{batch}-{i}")).role("reader");
                    if half != 0 {
                        new = new.rate_limit(BENCH_LIMIT.parse().unwrap());
                    }
                    if half == 1 {
                        new = new.credits(Credits::new(MAX_CREDITS).unwrap());
                    }
                    ExistingKey::with_secret(new, &fake_token(&mut rng)).unwrap()
                })
                .collect();
            store.import_keys(&Actor::admin("bench-admin"), keys).unwrap();
        }
    }
    let grew = rss_bytes().saturating_sub(before);
    println!("{}", json!({ "grew_bytes": grew, "kind": kind }));
}

// ---------------------------------------------------------------------------------------
// Report.

fn print_table(r: &Value) {
    let v = &r["verify"];
    let c = &r["create"];
    let num = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    let cell = |x: f64, prec: usize| {
        if x.is_nan() {
            "-".to_owned()
        } else {
            format!("{x:.prec$}")
        }
    };
    let mut rows: Vec<(String, [String; 4])> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&str) -> String| {
        rows.push((label.to_owned(), SYSTEMS.map(f)));
    };
    for (label, k) in [
        ("verify hit, ns", "hit_ns"),
        ("verify miss, ns", "miss_ns"),
        ("verify 50/50, ns", "mixed_ns"),
    ] {
        row(label, &|s| cell(num(&v[s][k]), 0));
    }
    row("verify malformed, ns", &|s| cell(num(&v[s]["malformed_ns"]), 0));
    row("verify 50/50 1 thread, M/s", &|s| {
        cell(num(&v[s]["mixed_1t_ops_per_s"]) / 1e6, 2)
    });
    row("verify 50/50 2 threads, M/s", &|s| {
        cell(num(&v[s]["mixed_2t_ops_per_s"]) / 1e6, 2)
    });
    for callers in CALLERS {
        let k = callers.to_string();
        row(&format!("create x{callers}, ops/s"), &|s| {
            cell(num(&c[s][&k]["ops_per_s"]), 0)
        });
        row(&format!("create x{callers}, p50 / p99 us"), &|s| {
            if c[s][&k].is_null() {
                "-".to_owned()
            } else {
                format!(
                    "{} / {}",
                    cell(num(&c[s][&k]["p50_us"]), 0),
                    cell(num(&c[s][&k]["p99_us"]), 0)
                )
            }
        });
    }
    let o = &r["open"];
    row(
        &format!("open {} events: full replay, ms", o["events"]),
        &|s| match s {
            "keyledger" => cell(num(&o["full_replay_ms"]), 0),
            "sled" => format!("{} (raw scan)", cell(num(&o["raw_scan_ms"]), 0)),
            _ => "-".to_owned(),
        },
    );
    row(
        &format!("open {} events: from snapshot, ms", o["events"]),
        &|s| match s {
            "keyledger" => cell(num(&o["snapshot_open_ms"]), 0),
            _ => "-".to_owned(),
        },
    );
    row("first open after the writes, ms", &|s| match s {
        "keyledger" => cell(num(&o["first_open_after_writes_ms"]), 0),
        _ => "-".to_owned(),
    });
    let m = &r["memory"];
    row("resident bytes / live key", &|s| match s {
        "keyledger" => cell(num(&m["bytes_per_key"]), 0),
        _ => "-".to_owned(),
    });
    let d = &r["disk"];
    for callers in CALLERS {
        row(
            &format!("disk fdatasync p50 before x{callers}, us"),
            &|s| match s {
                "sqlite" => cell(num(&d[&format!("before_x{callers}")]["fdatasync_4k_p50_us"]), 0),
                _ => "-".to_owned(),
            },
        );
    }
    row("load, s", &|s| {
        let l = &r["load"];
        match s {
            "keyledger" => cell(num(&l["keyledger_s"]), 1),
            "sqlite" => cell(num(&l["sqlite_s"]), 1),
            "sled" => cell(num(&l["sled_s"]), 1),
            _ => cell(num(&l["limit_s"]), 1),
        }
    });

    let mc = &r["machine"];
    println!();
    println!(
        "keyledger peers: {} mode, {} keys; {} ({} cores), linux {}; sled cache {} KiB",
        r["mode"].as_str().unwrap_or(""),
        r["keys"],
        mc["cpu"].as_str().unwrap_or("?"),
        mc["cores"],
        mc["kernel"].as_str().unwrap_or("?"),
        CACHE_BYTES >> 10
    );
    let w0 = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let w = rows
        .iter()
        .flat_map(|(_, cells)| cells.iter().map(String::len))
        .chain(SYSTEMS.iter().map(|s| s.len()))
        .max()
        .unwrap_or(0);
    let header: Vec<String> = SYSTEMS.iter().map(|s| format!("{s:>w$}")).collect();
    println!("{:w0$}  {}", "", header.join("  "));
    for (label, cells) in &rows {
        let cells: Vec<String> = cells.iter().map(|c| format!("{c:>w$}")).collect();
        println!("{label:w0$}  {}", cells.join("  "));
    }
    println!(
        "durable = sqlite: fdatasync per commit; keyledger: fdatasync per group commit; \
         sled: flush() = sync_file_range only"
    );
    println!();
    let ratios = r["ratios"].as_object().unwrap();
    for (k, x) in ratios {
        let x = x
            .as_f64()
            .map_or_else(|| "null".to_owned(), |x| format!("{x:.2}"));
        println!("{k:w0$}  {x:>w$}");
    }
}
