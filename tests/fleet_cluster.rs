//! A fleet on a real three-server NATS cluster: three nats-servers clustered on loopback,
//! the log and the heads bucket at R3, three `keyledger serve` hosts each given all three
//! servers' URLs. Under continuous creates and deletes from every host, each server in
//! turn is killed with SIGKILL (the log stream's leader first, found through
//! `$JS.API.STREAM.INFO`) and started again. Afterwards every acknowledged create verifies
//! on every host, no acknowledged delete verifies anywhere, `check` passes on every store
//! and the exports are the same bytes. The test prints what it saw (run it with
//! `--nocapture`): writes acknowledged and failed, and the longest pause in acknowledged
//! writes around each kill; it asserts nothing on timing.

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

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use cluster::Cluster;
use hosts::{Host, cli, eventually, http};
use served::{Served, super_admin_key};

/// The log's stream, and the heads bucket's.
const LOG: &str = "keyledger";
const BUCKET: &str = "KV_keyledger-hosts";

/// What one write did: when it was answered, and, if it was acknowledged, the key it
/// created or deleted (its id and secret).
struct Write {
    done: Instant,
    create: bool,
    acknowledged: Option<(String, String)>,
    /// Otherwise: the status and error kind (0 and `none`: no answer).
    failed: (u16, String),
}

/// An answer's status and error kind.
fn failure(answer: Option<&hosts::Answer>) -> (u16, String) {
    match answer {
        None => (0, "none".to_owned()),
        Some(a) => {
            let kind = serde_json::from_str::<serde_json::Value>(&a.body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned));
            (a.status, kind.unwrap_or_default())
        }
    }
}

/// Creates keys through the host at `addr`, and deletes every third one it created, one
/// write at a time, until `stop`.
fn churn(addr: SocketAddr, root: &str, host: &str, stop: &AtomicBool) -> Vec<Write> {
    let mut writes = Vec::new();
    let mut live: Vec<(String, String)> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let write = if n.is_multiple_of(3) && !live.is_empty() {
            let (id, secret) = live.remove(0);
            let answer = http(addr, "DELETE", &format!("/v1/keys/{id}"), Some(root), None);
            Write {
                done: Instant::now(),
                create: false,
                failed: failure(answer.as_ref()),
                acknowledged: answer.filter(|a| a.status == 200).map(|_| (id, secret)),
            }
        } else {
            let body = json!({"name": format!("{host}-{n}"), "roles": ["bot"]});
            let answer = http(addr, "POST", "/v1/keys", Some(root), Some(&body));
            let failed = failure(answer.as_ref());
            let created = answer.filter(|a| a.status == 201).map(|a| {
                let key = a.json();
                (
                    key["id"].as_str().unwrap().to_owned(),
                    key["key"].as_str().unwrap().to_owned(),
                )
            });
            live.extend(created.clone());
            Write {
                done: Instant::now(),
                create: true,
                acknowledged: created,
                failed,
            }
        };
        writes.push(write);
        std::thread::sleep(Duration::from_millis(100));
    }
    writes
}

/// Sets its flag when dropped: the writers stop also when the test fails.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The longest time between two acknowledged writes answered between `from` and `to`
/// (sorted), counting from `from` and up to `to` where none was.
fn longest_pause(done: &[Instant], from: Instant, to: Instant) -> Duration {
    let inside: Vec<Instant> = done.iter().copied().filter(|t| *t >= from && *t <= to).collect();
    let mut longest = Duration::ZERO;
    let mut last = from;
    for t in inside.iter().chain(std::iter::once(&to)) {
        longest = longest.max(t.saturating_duration_since(last));
        last = *t;
    }
    longest
}

/// Waits (at most a minute) until `stream` has a leader and both other replicas are
/// current; returns the leader's index.
fn settled(cluster: &Cluster, stream: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((leader, true)) = cluster.leader(stream) {
            return Cluster::index(&leader).unwrap();
        }
        assert!(Instant::now() < deadline, "{stream} does not settle");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn killing_each_server_of_a_three_node_cluster_in_turn_loses_no_acknowledged_write() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&dir.path().join("nats"));
    cluster.wait_for_jetstream();
    let chain_key = dir.path().join("chain.key");
    cli(
        &dir.path().join("unused"),
        &["chain-key", "new", chain_key.to_str().unwrap()],
    );
    let root = super_admin_key(&dir.path().join("a"), &chain_key, "root-admin", &[]);
    let urls = cluster.urls();
    let mut hosts: Vec<Host> = ["a", "b", "c"]
        .iter()
        .map(|name| Host {
            name: (*name).to_owned(),
            db: dir.path().join(name),
            served: None,
            extra: Vec::new(),
        })
        .collect();
    for host in &mut hosts {
        let args = [
            "--chain-key-file",
            chain_key.to_str().unwrap(),
            "--nats",
            &urls,
            "--replicas",
            "3",
            "--host-id",
            &host.name,
        ];
        host.served = Some(Served::start(&host.db, &args));
    }
    let addrs: Vec<SocketAddr> = hosts.iter().map(|h| h.served.as_ref().unwrap().addr).collect();
    let auth =
        |i: usize, secret: &str| http(addrs[i], "GET", "/auth", Some(secret), None).map_or(0, |a| a.status);
    for i in 0..3 {
        eventually(60, "every host verifies keys", || auth(i, &root) == 200);
    }
    settled(&cluster, LOG);
    settled(&cluster, BUCKET);

    let stop = AtomicBool::new(false);
    let mut kills: Vec<(usize, Instant, bool, bool)> = Vec::new();
    let writes: Vec<Vec<Write>> = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let writers: Vec<_> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (stop, root, addr) = (&stop, &root, addrs[i]);
                s.spawn(move || churn(addr, root, name, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_secs(3));
        let mut killed: Vec<usize> = Vec::new();
        for _ in 0..3 {
            let log_leader = settled(&cluster, LOG);
            let bucket_leader = settled(&cluster, BUCKET);
            // The log's leader if it was not killed yet (always so the first time), else
            // the next server not killed yet.
            let victim = if killed.contains(&log_leader) {
                (0..3).find(|i| !killed.contains(i)).unwrap()
            } else {
                log_leader
            };
            killed.push(victim);
            let at = Instant::now();
            cluster.kill9(victim);
            kills.push((victim, at, victim == log_leader, victim == bucket_leader));
            std::thread::sleep(Duration::from_secs(10));
            cluster.restart(victim);
            settled(&cluster, LOG);
            settled(&cluster, BUCKET);
            std::thread::sleep(Duration::from_secs(2));
        }
        stop.store(true, Ordering::Release);
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    let all: Vec<&Write> = writes.iter().flatten().collect();
    let count = |create: bool, acked: bool| {
        all.iter()
            .filter(|w| w.create == create && w.acknowledged.is_some() == acked)
            .count()
    };
    eprintln!(
        "writes: creates {} acknowledged, {} failed; deletes {} acknowledged, {} failed",
        count(true, true),
        count(true, false),
        count(false, true),
        count(false, false)
    );
    let mut kinds: std::collections::BTreeMap<(u16, &str), usize> = std::collections::BTreeMap::new();
    for w in all.iter().filter(|w| w.acknowledged.is_none()) {
        *kinds.entry((w.failed.0, w.failed.1.as_str())).or_default() += 1;
    }
    eprintln!("failed writes by status and error: {kinds:?}");
    let mut acked: Vec<Instant> = all
        .iter()
        .filter(|w| w.acknowledged.is_some())
        .map(|w| w.done)
        .collect();
    acked.sort();
    // From a second before each kill to the next kill (or the writers' end): the server's
    // death, the election, its restart and its catching up.
    let end = all.iter().map(|w| w.done).max().unwrap();
    let mut election = Duration::ZERO;
    for (k, (victim, at, led_log, led_bucket)) in kills.iter().enumerate() {
        let (from, to) = (
            *at - Duration::from_secs(1),
            kills.get(k + 1).map_or(end, |next| next.1),
        );
        let fleet = longest_pause(&acked, from, to);
        let worst_host = writes
            .iter()
            .map(|w| {
                let mut done: Vec<Instant> = w
                    .iter()
                    .filter(|w| w.acknowledged.is_some())
                    .map(|w| w.done)
                    .collect();
                done.sort();
                longest_pause(&done, from, to)
            })
            .max()
            .unwrap_or_default();
        if *led_log {
            election = election.max(fleet);
        }
        eprintln!(
            "killed {} (led the log: {led_log}, the heads bucket: {led_bucket}): longest pause in \
             acknowledged writes {fleet:.2?} for the fleet, {worst_host:.2?} for one host",
            Cluster::name(*victim)
        );
    }
    eprintln!("longest write pause across a leader election of the log: {election:.2?}");
    assert!(kills.iter().any(|k| k.2), "no kill hit the log's leader");
    assert!(count(true, true) > 0 && count(false, true) > 0);

    // Every host ends with the same log; then what every acknowledgement promised.
    let last_seq = |i: usize| {
        http(addrs[i], "GET", "/healthz", None, None)
            .and_then(|a| a.json()["last_seq"].as_u64())
            .unwrap_or(0)
    };
    eventually(60, "the hosts converge", || {
        let top = last_seq(0);
        (1..3).all(|i| last_seq(i) == top) && (0..3).all(|i| auth(i, &root) == 200)
    });
    let deleted: std::collections::HashSet<&str> = all
        .iter()
        .filter(|w| !w.create)
        .filter_map(|w| w.acknowledged.as_ref().map(|(id, _)| id.as_str()))
        .collect();
    // A delete that failed may or may not have landed: its key is checked by the exports.
    let attempted: std::collections::HashSet<String> = writes
        .iter()
        .flat_map(|host| {
            let created: Vec<&(String, String)> = host
                .iter()
                .filter(|w| w.create)
                .filter_map(|w| w.acknowledged.as_ref())
                .collect();
            let deletes = host.iter().filter(|w| !w.create).count();
            created
                .into_iter()
                .take(deletes)
                .map(|(id, _)| id.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    for w in &all {
        let Some((id, secret)) = &w.acknowledged else {
            continue;
        };
        for i in 0..3 {
            if !w.create || deleted.contains(id.as_str()) {
                assert_ne!(auth(i, secret), 200, "deleted key {id} verifies on host {i}");
            } else if !attempted.contains(id) {
                assert_eq!(
                    auth(i, secret),
                    200,
                    "created key {id} does not verify on host {i}"
                );
            }
        }
    }
    hosts::stop_and_compare(dir.path(), &chain_key, &mut hosts);
    drop(cluster);
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "{:?}",
        started.elapsed()
    );
    eprintln!("took {:.1?}", started.elapsed());
}
