//! What a revocation's confirmation means in a fleet, against a real nats-server: forged
//! and ghost heads in the heads bucket, a host cut off from NATS mid-revocation (through a
//! relay the test cuts), the opt-out of fencing, a halted host that went stale, a halted
//! fleet moved to a new stream, and the heads bucket deleted under the fleet.
//!
//! The heads bucket is written here as an attacker would: with a plain NATS client
//! (`async-nats`) that may write the bucket but lacks the chain key.

#![allow(clippy::unwrap_used)]

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/fleet.rs"]
mod hosts;
#[path = "support/nats.rs"]
mod nats;
#[path = "support/relay.rs"]
mod relay;
#[path = "support/served.rs"]
mod served;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use hosts::{Fleet, eventually, http};
use serde_json::Value;

/// Hosts hear each other every 100 ms, fence after 1 s unheard, and are counted out
/// 300 ms after that.
const FAST: &[&str] = &["--heartbeat", "100ms", "--lease", "1s", "--margin", "300ms"];

fn flags(extra: &[&'static str]) -> Vec<&'static str> {
    FAST.iter().chain(extra).copied().collect()
}

/// Runs `f` with a JetStream context on the fleet's server, as a plain client.
fn as_client<T>(url: &str, f: impl AsyncFnOnce(async_nats::jetstream::Context) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        f(async_nats::jetstream::new(client)).await
    })
}

/// Puts `value` under `key` in the heads bucket.
fn put_head(url: &str, key: &str, value: Vec<u8>) {
    as_client(url, async |js| {
        let kv = js.get_key_value("keyledger-hosts").await.unwrap();
        kv.put(key, value.into()).await.unwrap();
    });
}

/// A version 1 head (what 0.4.0 announced, unsealed) claiming record `seq`.
fn v1_head(seq: u64) -> Vec<u8> {
    let mut b = b"KLHOST\0\0".to_vec();
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&[0; 32]);
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&0i64.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.push(0);
    b
}

/// A version 2 head (the current layout) claiming record `seq`, with a seal of zeros.
fn forged_v2_head(seq: u64) -> Vec<u8> {
    let mut b = b"KLHOST\0\0".to_vec();
    b.extend_from_slice(&2u16.to_le_bytes());
    for n in [1u64, u64::MAX >> 1, seq] {
        b.extend_from_slice(&n.to_le_bytes());
    }
    b.extend_from_slice(&[0; 32]);
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&0i64.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&[0, 0, 1]);
    b.extend_from_slice(&1_000_000u64.to_le_bytes());
    b.extend_from_slice(&1_000_000u64.to_le_bytes());
    b.extend_from_slice(&[0; 32]);
    b
}

/// `/auth` at `addr` for `secret`, polled until `stop`: the times it answered 200.
fn accepted_at(addr: SocketAddr, secret: &str, stop: &AtomicBool) -> Vec<Instant> {
    let mut accepted = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let asked = Instant::now();
        if http(addr, "GET", "/auth", Some(secret), None).is_some_and(|a| a.status == 200) {
            // Counted from when it was asked: the answer may have been decided then.
            accepted.push(asked);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    accepted
}

/// Deletes key `id` through host `i`; returns the answer and when it arrived.
fn delete(fleet: &Fleet, i: usize, id: &str) -> (Value, Instant) {
    let answer = fleet.call(i, "DELETE", &format!("/v1/keys/{id}"), None);
    let at = Instant::now();
    assert_eq!(answer.status, 200, "{answer:?}");
    (answer.json(), at)
}

fn unconfirmed(answer: &Value) -> Vec<String> {
    answer
        .get("unconfirmed")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|h| h.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Cut off from NATS, `b` keeps accepting the key until it fences; an attacker puts a
/// head with seq 2^62 under b's name, again and again. The revocation on `a` is not
/// confirmed on the strength of it: by the time the answer claims confirmation, b rejects
/// every key; the forged heads are counted and reported.
#[test]
fn a_forged_head_under_a_live_hosts_name_confirms_nothing() {
    let fleet = Fleet::start_each(&[
        ("a", &flags(&["--confirm-timeout", "20s"]), false),
        ("b", &flags(&[]), true),
    ]);
    let (id, secret) = fleet.create(0, "bot");
    fleet.converged(2);
    let url = fleet.url();
    let (stop, b) = (AtomicBool::new(false), fleet.addr(1));
    let (answer, answered, accepted) = std::thread::scope(|s| {
        let forger = s.spawn(|| {
            as_client(&url, async |js| {
                let kv = js.get_key_value("keyledger-hosts").await.unwrap();
                while !stop.load(Ordering::Acquire) {
                    kv.put("b", forged_v2_head(1 << 62).into()).await.unwrap();
                    kv.put("b", v1_head(1 << 62).into()).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        });
        let watcher = s.spawn(|| accepted_at(b, &secret, &stop));
        fleet.relay(1).cut();
        std::thread::sleep(Duration::from_millis(100));
        let (answer, answered) = delete(&fleet, 0, &id);
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Release);
        forger.join().unwrap();
        (answer, answered, watcher.join().unwrap())
    });
    assert!(
        !unconfirmed(&answer).is_empty() || accepted.iter().all(|t| *t < answered),
        "confirmed while b still accepted the key: {answer}, b accepted until {:?} after the answer",
        accepted.last().map(|t| t.saturating_duration_since(answered))
    );
    let status = fleet.fleet_status(0);
    assert!(status["ignored_heads"].as_u64().unwrap() >= 2, "{status}");
    assert_eq!(status["last_ignored"]["ignored_head"], "b", "{status}");
    fleet.relay(1).restore();
    eventually(30, "b catches up and rejects the deleted key", || {
        fleet.auth(1, &secret) == 401
    });
}

/// Entries under names no host has (junk, an unsealed version 1 head, a deletion) make no
/// revocation wait, and are reported by `/v1/fleet` and `keyledger fleet`.
#[test]
fn a_ghost_entry_makes_no_revocation_wait_and_is_reported() {
    let fleet = Fleet::start_each(&[("a", &flags(&["--confirm-timeout", "20s"]), false)]);
    let url = fleet.url();
    put_head(&url, "ghost", b"x".to_vec());
    put_head(&url, "ghost-v1", v1_head(0));
    put_head(&url, "ghost-v2", forged_v2_head(0));
    let (id, _) = fleet.create(0, "bot");
    let started = Instant::now();
    let (answer, _) = delete(&fleet, 0, &id);
    assert!(unconfirmed(&answer).is_empty(), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a ghost made the revocation wait {:?}",
        started.elapsed()
    );
    let status = fleet.fleet_status(0);
    assert!(status["ignored_heads"].as_u64().unwrap() >= 3, "{status}");
    assert_eq!(status["hosts"].as_array().unwrap().len(), 1, "{status}");
    let out = served::keyledger(&fleet.dir.path().join("none"))
        .args(["--chain-key-file", fleet.chain_key.to_str().unwrap()])
        .args(["fleet", "--nats", &url, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ignored: Vec<&str> = lines.iter().filter_map(|l| l["ignored_head"].as_str()).collect();
    assert_eq!(ignored, ["ghost", "ghost-v1", "ghost-v2"], "{lines:?}");
    assert_eq!(lines.iter().filter(|l| l["host"] == "a").count(), 1, "{lines:?}");
}

/// One host cut off from NATS mid-revocation: the answer never claims confirmation while
/// the cut-off host accepts the key, and by the time it does, that host rejects every key
/// (and says so in `/healthz`). Restored, it catches up and verifies again.
#[test]
fn a_host_cut_off_mid_revocation_rejects_every_key_before_the_others_count_it_out() {
    let fleet = Fleet::start_each(&[
        ("a", &flags(&["--confirm-timeout", "20s"]), false),
        ("b", &flags(&[]), true),
    ]);
    let (id, secret) = fleet.create(0, "bot");
    let (_, other) = fleet.create(0, "other");
    fleet.converged(3);
    let (stop, b) = (AtomicBool::new(false), fleet.addr(1));
    let (answer, answered, accepted) = std::thread::scope(|s| {
        let watcher = s.spawn(|| accepted_at(b, &secret, &stop));
        fleet.relay(1).cut();
        let started = Instant::now();
        let (answer, answered) = delete(&fleet, 0, &id);
        // The lease and the margin, counted from b's last head at most a heartbeat before
        // the cut.
        assert!(
            answered - started >= Duration::from_millis(1100) && answered - started < Duration::from_secs(8),
            "counted out after {:?}",
            answered - started
        );
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Release);
        (answer, answered, watcher.join().unwrap())
    });
    assert!(unconfirmed(&answer).is_empty(), "{answer}");
    assert!(!accepted.is_empty(), "b accepted the key while it was cut off");
    let last = *accepted.last().unwrap();
    assert!(
        last < answered,
        "b accepted the key {:?} after the answer claimed confirmation",
        last - answered
    );
    assert_eq!(
        fleet.auth(1, &other),
        403,
        "fenced: every key, not just the revoked one"
    );
    let health = fleet.health(1);
    assert_eq!(health.status, 503, "{health:?}");
    assert!(health.body.contains("\"fenced\""), "{health:?}");
    fleet.relay(1).restore();
    eventually(30, "b is heard again and catches up", || {
        fleet.auth(1, &other) == 200 && fleet.auth(1, &secret) == 401
    });
}

/// A host started with `--serve-past-lease` keeps verifying while cut off; a revocation
/// lists it as unconfirmed instead of claiming confirmation.
#[test]
fn a_cut_off_host_that_serves_past_its_lease_is_listed_as_unconfirmed() {
    let fleet = Fleet::start_each(&[
        ("a", &flags(&["--confirm-timeout", "20s"]), false),
        (
            "b",
            &flags(&["--serve-past-lease", "--stale-reject", "30s"]),
            true,
        ),
    ]);
    let (id, secret) = fleet.create(0, "bot");
    fleet.converged(2);
    fleet.relay(1).cut();
    let (answer, _) = delete(&fleet, 0, &id);
    assert_eq!(unconfirmed(&answer), ["b"], "{answer}");
    assert_eq!(
        fleet.auth(1, &secret),
        200,
        "b still accepts it, as the answer says"
    );
    let b = &fleet.fleet_status(0)["hosts"][1];
    assert_eq!(
        (b["host"].as_str(), b["fences"].as_bool()),
        (Some("b"), Some(false))
    );
    fleet.relay(1).restore();
    eventually(30, "b catches up", || fleet.auth(1, &secret) == 401);
}

/// Publishes a message sealed with the fleet's chain key for its stream and the next
/// position, whose block lies far past the fleet's head (what only a chain-key holder can
/// make: a message without the key, or replayed from another stream, is skipped): every
/// host halts. It needs the `fuzzing` feature's hook, which the test command enables.
#[cfg(feature = "fuzzing")]
fn halt_every_host(fleet: &Fleet) {
    let stream_id = fleet.fleet_status(0)["stream_id"].as_str().unwrap().to_owned();
    let key = keyledger::ChainKey::from_file(&fleet.chain_key).unwrap();
    let url = fleet.url();
    as_client(&url, async |js| {
        let last = js
            .get_stream("keyledger")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .last_sequence;
        let message = keyledger::fuzzing::sealed_out_of_place_message(&key, &stream_id, last + 1).unwrap();
        js.publish("keyledger.keyledger.log", message.into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    for i in 0..fleet.hosts.len() {
        eventually(30, "the host halts", || {
            fleet.health(i).body.contains("\"halted\"")
        });
    }
}

/// A halted host that lost the server rejects every key (fenced), and verifies again on its
/// own once the server is back, though it applies nothing more.
#[cfg(feature = "fuzzing")]
#[test]
fn a_host_that_went_stale_while_halted_recovers_once_the_server_is_back() {
    let fleet = Fleet::start_each(&[("a", &flags(&[]), false), ("b", &flags(&[]), false)]);
    let (_, secret) = fleet.create(0, "bot");
    fleet.converged(2);
    halt_every_host(&fleet);
    assert_eq!(
        fleet.auth(1, &secret),
        200,
        "halted, it verifies from what it has"
    );
    fleet.nats.lock().unwrap().kill9();
    eventually(20, "b fences", || fleet.auth(1, &secret) == 403);
    fleet.nats.lock().unwrap().restart();
    eventually(30, "b verifies again", || fleet.auth(1, &secret) == 200);
    let health = fleet.health(1).json();
    assert!(health["fleet"]["halted"].is_string(), "still halted: {health}");
    assert!(!health["fleet"]["rejecting"].as_bool().unwrap(), "{health}");
}

/// The operator's way out of a halted fleet (README, "Recovering a halted fleet"): stop
/// every host, start one on a new stream (`--stream`), which it bootstraps with its log
/// (the bad message is not in it: no host applied it), then the others with the same flag,
/// which join with theirs. Every key made before verifies everywhere, writes work again
/// and reach every host, and every host's log is the same bytes, which `check` proves.
#[cfg(feature = "fuzzing")]
#[test]
fn a_halted_fleet_moves_to_a_new_stream_started_from_a_hosts_log_with_nothing_lost() {
    let mut fleet = Fleet::start_each(&[("a", &flags(&[]), false), ("b", &flags(&[]), false)]);
    let (_, before_a) = fleet.create(0, "made on a");
    let (_, before_b) = fleet.create(1, "made on b");
    fleet.converged(3);
    halt_every_host(&fleet);
    let refused = fleet.call(
        1,
        "POST",
        "/v1/keys",
        Some(serde_json::json!({"name": "x", "roles": ["bot"]})),
    );
    assert_eq!(refused.status, 503, "a halted host takes no write: {refused:?}");
    assert!(refused.body.contains("fleet_halted"), "{refused:?}");

    for i in 0..2 {
        fleet.stop(i);
        fleet.hosts[i]
            .extra
            .extend(["--stream".to_owned(), "keyledger-2".to_owned()]);
    }
    fleet.start_host(0);
    fleet.start_host(1);
    for i in 0..2 {
        eventually(60, "the host serves on the new stream", || {
            fleet.health(i).status == 200
        });
        for secret in [&before_a, &before_b] {
            assert_eq!(
                fleet.auth(i, secret),
                200,
                "a key made before the halt, on host {i}"
            );
        }
    }
    let status = fleet.fleet_status(1);
    assert_eq!(status["stream"], "keyledger-2", "{status}");
    assert_eq!(status["halted"], Value::Null, "{status}");
    let (_, after) = fleet.create(1, "made after");
    eventually(30, "the new key reaches a", || fleet.auth(0, &after) == 200);
    // Every host's log the same bytes, each proved by `check`; the audit: the keys made
    // before, the one made after, and nothing of the bad message.
    let audit = fleet.stop_and_compare();
    let names: Vec<&str> = audit.iter().filter_map(|e| e["key_name"].as_str()).collect();
    assert_eq!(
        names,
        ["root-admin", "made on a", "made on b", "made after"],
        "{audit:?}"
    );
}

/// The heads bucket deleted under the fleet: the hosts notice (counted in `/v1/fleet`, a
/// line in their log), keep verifying, make it again, and revocations are confirmed again.
#[test]
fn the_heads_bucket_deleted_under_the_fleet_is_noticed_and_made_again() {
    let mut fleet = Fleet::start_each(&[
        ("a", &flags(&["--confirm-timeout", "20s"]), false),
        ("b", &flags(&[]), false),
    ]);
    let (_, secret) = fleet.create(0, "bot");
    let (id, _) = fleet.create(1, "to delete");
    fleet.converged(3);
    let url = fleet.url();
    as_client(&url, async |js| {
        js.delete_key_value("keyledger-hosts").await.unwrap()
    });
    let deleted = Instant::now();
    // Past several leases, both keep verifying.
    while deleted.elapsed() < Duration::from_secs(3) {
        for i in 0..2 {
            assert_eq!(fleet.auth(i, &secret), 200, "host {i} stopped verifying");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in 0..2 {
        let status = fleet.fleet_status(i);
        assert!(status["heads_bucket_lost"].as_u64().unwrap() >= 1, "{status}");
    }
    eventually(10, "the bucket is back", || {
        as_client(&url, async |js| js.get_key_value("keyledger-hosts").await.is_ok())
    });
    let (answer, _) = delete(&fleet, 0, &id);
    assert!(unconfirmed(&answer).is_empty(), "{answer}");
    eventually(10, "a sees b again", || {
        fleet.fleet_status(0)["hosts"].as_array().unwrap().len() == 2
    });
    let log = fleet.stop(0);
    assert!(log.contains("heads bucket"), "{log}");
}

/// What one request stream saw around a server's death: when each request was sent, and
/// whether it was answered.
type Sends = Vec<(Instant, bool)>;

/// Sends `request` every `every` (each waiting at most `patience`, as a host's
/// announcements do) until `stop`.
async fn keep_sending<F: Future<Output = bool>>(
    every: Duration,
    patience: Duration,
    stop: &AtomicBool,
    mut request: impl FnMut() -> F,
) -> Sends {
    let mut sends = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let sent = Instant::now();
        let ok = tokio::time::timeout(patience, request()).await.unwrap_or(false);
        sends.push((sent, ok));
        tokio::time::sleep(every.saturating_sub(sent.elapsed())).await;
    }
    sends
}

/// The longest time between two answered requests' send times, across `killed`: what
/// a host's fence sees.
fn gap_across(sends: &Sends, killed: Instant) -> Option<Duration> {
    let before = sends
        .iter()
        .rev()
        .find(|(t, ok)| *ok && *t <= killed)
        .map(|(t, _)| *t)?;
    let after = sends.iter().find(|(t, ok)| *ok && *t > killed).map(|(t, _)| *t)?;
    Some(after - before)
}

fn figures(mut gaps: Vec<Duration>) -> String {
    gaps.sort();
    match (gaps.first(), gaps.get(gaps.len() / 2), gaps.last()) {
        (Some(min), Some(median), Some(max)) => format!("min {min:.2?}, median {median:.2?}, max {max:.2?}"),
        _ => "no figures".to_owned(),
    }
}

/// Measures a NATS leader election against the lease: three clustered servers, an R3 log
/// stream and an R3 heads bucket; the server leading the bucket (even runs) or the log
/// (odd runs) is killed while a client appends to the stream and announces in the bucket
/// every 100 ms (waiting 1 s at most, as a host does). Prints the gap between answered
/// requests across the kill: for announcements when the bucket's leader died, what a
/// host's fence sees; for appends when the log's leader died, how long writes fail.
/// `KEYLEDGER_ELECTION_RUNS` sets the number of runs (default 6).
///
/// `NATS_SERVER=... cargo test --features tower --test fleet_lease -- --ignored --nocapture
/// a_leader_election`
#[test]
#[ignore = "a measurement: a minute or more, three servers"]
fn a_leader_election_measured_against_the_lease() {
    let runs: usize = std::env::var("KEYLEDGER_ELECTION_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6);
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster::Cluster::start(dir.path());
    let urls = cluster.urls();
    let (mut announce_gaps, mut append_gaps) = (Vec::new(), Vec::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for run in 0..runs {
        let stop = AtomicBool::new(false);
        let (killed, (led_bucket, led_log), announced, appended) = rt.block_on(async {
            let addrs: Vec<&str> = urls.split(',').collect();
            let client = async_nats::ConnectOptions::new()
                .max_reconnects(None)
                .connect(addrs.as_slice())
                .await
                .unwrap();
            let js = async_nats::jetstream::new(client);
            let name = format!("measure{run}");
            let mut log = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    let config = async_nats::jetstream::stream::Config {
                        name: name.clone(),
                        subjects: vec![format!("m.{run}")],
                        num_replicas: 3,
                        ..Default::default()
                    };
                    if let Ok(s) = js.get_or_create_stream(config).await {
                        return s;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
            .await
            .unwrap();
            let kv = js
                .create_key_value(async_nats::jetstream::kv::Config {
                    bucket: name.clone(),
                    history: 1,
                    num_replicas: 3,
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut bucket = js.get_stream(format!("KV_{name}")).await.unwrap();
            let leader = |info: &async_nats::jetstream::stream::Info| {
                info.cluster.as_ref().and_then(|c| c.leader.clone())
            };
            let kv_leader = loop {
                if let Some(l) = bucket.info().await.ok().and_then(leader) {
                    break l;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let log_leader = loop {
                if let Some(l) = log.info().await.ok().and_then(leader) {
                    break l;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            // Even runs kill the bucket's leader, odd ones the log's.
            let target = if run % 2 == 0 { &kv_leader } else { &log_leader };
            let victim = (0..3).find(|&i| &cluster::Cluster::name(i) == target).unwrap();
            let subject = format!("m.{run}");
            let patience = Duration::from_secs(1);
            let every = Duration::from_millis(100);
            let (announced, appended, killed) = tokio::join!(
                keep_sending(every, patience, &stop, || {
                    let kv = kv.clone();
                    async move { kv.put("host", "head".into()).await.is_ok() }
                }),
                keep_sending(every, patience, &stop, || {
                    let (js, subject) = (js.clone(), subject.clone());
                    async move {
                        match js.publish(subject, "m".into()).await {
                            Ok(ack) => ack.await.is_ok(),
                            Err(_) => false,
                        }
                    }
                }),
                async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let killed = Instant::now();
                    tokio::task::block_in_place(|| cluster.kill9(victim));
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    stop.store(true, Ordering::Release);
                    (killed, victim)
                }
            );
            let (killed, victim) = killed;
            tokio::task::block_in_place(|| cluster.restart(victim));
            let led = |leader: &String| *leader == cluster::Cluster::name(victim);
            (killed, (led(&kv_leader), led(&log_leader)), announced, appended)
        });
        let announce = gap_across(&announced, killed);
        let append = gap_across(&appended, killed);
        eprintln!(
            "run {run}: killed a server leading the bucket: {led_bucket}, the log: {led_log}; answered \
             announcements {announce:?} apart across it, appends {append:?}"
        );
        if led_bucket {
            announce_gaps.extend(announce);
        }
        if led_log {
            append_gaps.extend(append);
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    eprintln!(
        "the bucket's leader killed: announcements (what the fence sees) {}",
        figures(announce_gaps)
    );
    eprintln!("the log's leader killed: appends {}", figures(append_gaps));
}
