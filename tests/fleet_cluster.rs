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

#[path = "support/churn.rs"]
mod churn;
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

use churn::{StopOnDrop, churn, longest_pause, settled};
use std::time::{Duration, Instant};

use cluster::Cluster;
use hosts::{Host, cli, eventually, http};
use served::{Served, super_admin_key};

/// The log's stream, and the heads bucket's.
const LOG: &str = "keyledger";
const BUCKET: &str = "KV_keyledger-hosts";

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
    let writes: Vec<Vec<churn::Write>> = std::thread::scope(|s| {
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

    churn::report(&writes);
    let acked = churn::acknowledged_at(writes.iter().flatten());
    // From a second before each kill to the next kill (or the writers' end): the server's
    // death, the election, its restart and its catching up.
    let end = writes.iter().flatten().map(|w| w.done).max().unwrap();
    let mut election = Duration::ZERO;
    for (k, (victim, at, led_log, led_bucket)) in kills.iter().enumerate() {
        let (from, to) = (
            *at - Duration::from_secs(1),
            kills.get(k + 1).map_or(end, |next| next.1),
        );
        let fleet = longest_pause(&acked, from, to);
        let worst_host = writes
            .iter()
            .map(|w| longest_pause(&churn::acknowledged_at(w), from, to))
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

    // Every host ends with the same log; then what every acknowledgement promised.
    churn::check_promises(&writes, &addrs, &root);
    hosts::stop_and_compare(dir.path(), &chain_key, &mut hosts);
    drop(cluster);
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "{:?}",
        started.elapsed()
    );
    eprintln!("took {:.1?}", started.elapsed());
}
