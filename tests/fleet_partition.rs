//! A fleet on a three-server NATS cluster (R3) in network namespaces, cut apart as a
//! network would be: every server and every host runs in a namespace of its own, on a
//! clients' network (hosts and servers' client ports) and a routes' network (the servers'
//! cluster links); the test reaches the hosts over a third network that is never cut.
//! A cut takes a node's cable out of a bridge: its packets go nowhere, connections stall.
//!
//! * A server cut from the other two (a minority), the log's leader: no write sent through
//!   it is acknowledged while it is cut; a host on the majority's servers keeps writing
//!   (with the default lease: its deletes wait for the hosts behind the minority server to
//!   be counted out, a lease and a margin after they were last heard); after
//!   the cut heals, every acknowledged create verifies on every host, no acknowledged
//!   delete verifies anywhere, `check` passes and the exports are the same bytes.
//! * A host cut from every server: a revocation on another host names it in `unconfirmed`
//!   and answers at its lease, not at the confirmation timeout; it drops out of the
//!   others' view (`live: false`); it goes stale, then rejects every key; healed, it
//!   catches up with what was written meanwhile, nothing lost, the exports the same bytes.
//!
//! Needs root for the namespaces (CI runs as root); see `support/netns.rs`. The tests print
//! what they saw (run with `--nocapture`) and assert nothing on timing but the order of
//! events.

#![allow(clippy::unwrap_used)]

#[path = "support/churn.rs"]
mod churn;
#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/fleet.rs"]
mod hosts;
#[path = "support/nats.rs"]
mod nats;
#[path = "support/netns.rs"]
mod netns;
#[path = "support/relay.rs"]
mod relay;
#[path = "support/served.rs"]
mod served;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use churn::{StopOnDrop, churn, settled};
use cluster::{Cluster, Place};
use hosts::{Host, cli, eventually, http};
use netns::{Net, Node};
use served::{Served, super_admin_key};

/// The log's stream, and the heads bucket's.
const LOG: &str = "keyledger";
const BUCKET: &str = "KV_keyledger-hosts";

/// The networks: clients (hosts and servers' client ports), routes (servers only), and
/// the test's own way to the hosts.
const CLIENTS: usize = 0;
const ROUTES: usize = 1;
const MANAGE: usize = 2;

/// Hosts hear each other every 100 ms, fence after a second unheard, and are counted out
/// 300 ms after that.
const FAST: &[&str] = &["--heartbeat", "100ms", "--lease", "1s", "--margin", "300ms"];

/// Three servers, each in its namespace, clustered over the routes' network; the hosts'
/// directories and chain key; the root admin key (made on the first host's store).
/// Its `Drop` stops the hosts, then the servers; the networks go after, with the fields.
struct Partitioned {
    net: Net,
    dir: TempDir,
    servers: Vec<Node>,
    cluster: Cluster,
    chain_key: std::path::PathBuf,
    root: String,
    nodes: Vec<Node>,
    hosts: Vec<Host>,
}

impl Partitioned {
    /// `None` where namespaces may not be made and the run asks to skip (see `netns.rs`).
    fn start() -> Option<Partitioned> {
        let mut net = Net::new(&[true, false, true])?;
        let dir = tempfile::tempdir().unwrap();
        let mut servers = Vec::new();
        let mut places = Vec::new();
        for i in 0..3u8 {
            let node = net.node(&format!("s{i}"));
            let client = net.attach(&node, CLIENTS, 1 + i);
            let route = net.attach(&node, ROUTES, 1 + i);
            places.push(Place {
                client: (client, 4222).into(),
                route: (route, 6222).into(),
                run_in: Some(net.run_in(&node)),
            });
            servers.push(node);
        }
        let cluster = Cluster::start_placed(&dir.path().join("nats"), places);
        cluster.wait_for_jetstream();
        let chain_key = dir.path().join("chain.key");
        cli(
            &dir.path().join("unused"),
            &["chain-key", "new", chain_key.to_str().unwrap()],
        );
        let root = super_admin_key(&dir.path().join("h0"), &chain_key, "root-admin", &[]);
        Some(Partitioned {
            net,
            dir,
            servers,
            cluster,
            chain_key,
            root,
            nodes: Vec::new(),
            hosts: Vec::new(),
        })
    }

    /// Starts host `h{n}` (the next one) in a namespace of its own, on the clients' network
    /// and the test's, given the servers `urls`, with `flags`; returns its index once it
    /// verifies the root key.
    fn host(&mut self, urls: &str, flags: &[&str]) -> usize {
        let i = self.hosts.len();
        let name = format!("h{i}");
        let node = self.net.node(&name);
        self.net.attach(&node, CLIENTS, 11 + i as u8);
        let manage = self.net.attach(&node, MANAGE, 11 + i as u8);
        let db = self.dir.path().join(&name);
        let mut cmd = self.net.command(&node, env!("CARGO_BIN_EXE_keyledger"));
        cmd.arg("--db")
            .arg(&db)
            .env_remove("KEYLEDGER_DB")
            .env_remove("KEYLEDGER_SERVER")
            .env_remove("KEYLEDGER_API_KEY")
            .args(["serve", "--listen", &format!("{manage}:0")])
            .args(["--chain-key-file", self.chain_key.to_str().unwrap()])
            .args(["--nats", urls, "--replicas", "3", "--host-id", &name])
            .args(flags);
        let served = Served::spawn(cmd, &db);
        self.nodes.push(node);
        self.hosts.push(Host {
            name,
            db,
            served: Some(served),
            extra: Vec::new(),
        });
        let root = self.root.clone();
        eventually(60, "the host verifies keys", || self.auth(i, &root) == 200);
        i
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.hosts[i].served.as_ref().unwrap().addr
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        (0..self.hosts.len()).map(|i| self.addr(i)).collect()
    }

    fn auth(&self, i: usize, secret: &str) -> u16 {
        http(self.addr(i), "GET", "/auth", Some(secret), None).map_or(0, |a| a.status)
    }

    fn call(&self, i: usize, method: &str, path: &str, body: Option<Value>) -> hosts::Answer {
        hosts::admin(self.addr(i), &self.root, method, path, body)
    }

    fn create(&self, i: usize, name: &str) -> (String, String) {
        hosts::create_key(self.addr(i), &self.root, name)
    }

    fn health(&self, i: usize) -> (u16, Value) {
        let a = http(self.addr(i), "GET", "/healthz", None, None).unwrap();
        (a.status, a.json())
    }

    /// Waits until every host has applied as many records as the most advanced one.
    fn converged(&self) {
        eventually(60, "the hosts converge", || {
            let seqs: Vec<Option<u64>> = (0..self.hosts.len())
                .map(|i| self.health(i).1["last_seq"].as_u64())
                .collect();
            seqs.iter().all(|s| s.is_some() && *s == seqs[0])
        });
    }

    /// Stops every host, checks each store and compares their exports.
    fn stop_and_compare(&mut self) {
        hosts::stop_and_compare(self.dir.path(), &self.chain_key, &mut self.hosts);
    }
}

/// The hosts' processes end before the namespaces they run in go.
impl Drop for Partitioned {
    fn drop(&mut self) {
        self.hosts.clear();
        for i in 0..3 {
            self.cluster.kill9(i);
        }
    }
}

/// Whether a process with `needle` in its command line runs.
fn running(needle: &str) -> bool {
    let out = Command::new("pgrep").args(["-f", needle]).output();
    out.is_ok_and(|o| o.status.success())
}

#[test]
fn writes_through_a_minority_server_are_never_acknowledged_and_nothing_acknowledged_is_lost() {
    let _one = one_at_a_time();
    let started = Instant::now();
    let Some(mut p) = Partitioned::start() else {
        return;
    };
    let urls = p.cluster.urls();
    p.host(&urls, &[]);
    let leader = settled(&p.cluster, LOG);
    settled(&p.cluster, BUCKET);
    // One host on the two servers that will keep their quorum, one on the leader alone.
    let majority: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| p.cluster.url(i))
        .collect();
    p.host(&majority.join(","), &[]);
    p.host(&p.cluster.url(leader), &[]);
    let (on_majority, on_minority) = (1, 2);
    settled(&p.cluster, LOG);
    let addrs = p.addrs();
    let names: Vec<String> = p.hosts.iter().map(|h| h.name.clone()).collect();

    let stop = AtomicBool::new(false);
    let mut window = (started, started);
    let mut led_at_cut = false;
    let writes: Vec<Vec<churn::Write>> = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let writers: Vec<_> = (0..3)
            .map(|i| {
                let (stop, root, addr, name) = (&stop, &p.root, addrs[i], &names[i]);
                s.spawn(move || churn(addr, root, name, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_secs(3));
        led_at_cut = p
            .cluster
            .leader(LOG)
            .is_some_and(|(l, _)| l == Cluster::name(leader));
        p.net.cut(&p.servers[leader], ROUTES);
        let cut = Instant::now();
        std::thread::sleep(Duration::from_secs(25));
        p.net.heal(&p.servers[leader], ROUTES);
        window = (cut, Instant::now());
        settled(&p.cluster, LOG);
        settled(&p.cluster, BUCKET);
        // Once (in ./test.sh, 2026-12-07) the cluster answered the hosts nothing for about
        // 15 s after the heal, though the monitoring endpoint said the stream had settled,
        // and one stream info answer in it said the stream ended 162 messages before what
        // the majority had written (a stale leader's answer, as far as the hosts' logs
        // tell): the hosts called the stream untrusted until it answered right again. The
        // writes after the heal run long enough to see them come back.
        std::thread::sleep(Duration::from_secs(20));
        stop.store(true, std::sync::atomic::Ordering::Release);
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    churn::report(&writes);
    let (cut, healed) = window;
    let during = |i: usize| -> Vec<&churn::Write> {
        writes[i]
            .iter()
            .filter(|w| w.sent >= cut && w.done < healed)
            .collect()
    };
    let acked = |ws: &[&churn::Write]| ws.iter().filter(|w| w.acknowledged.is_some()).count();
    for (i, name) in names.iter().enumerate() {
        let ws = during(i);
        eprintln!(
            "{name} while {} was cut off (it led the log: {led_at_cut}): {} writes sent, {} acknowledged",
            Cluster::name(leader),
            ws.len(),
            acked(&ws)
        );
    }
    assert!(
        led_at_cut,
        "{} no longer led the log when it was cut",
        Cluster::name(leader)
    );
    // The host on the (then) minority server wrote before the cut and writes after it
    // heals: what it could not do in between was the cut's doing.
    let before = writes[on_minority].iter().filter(|w| w.done < cut);
    let after = writes[on_minority].iter().filter(|w| w.sent > healed);
    assert!(
        before.filter(|w| w.acknowledged.is_some()).count() > 0,
        "h2 wrote before the cut"
    );
    assert!(
        after.filter(|w| w.acknowledged.is_some()).count() > 0,
        "h2 writes again after it heals"
    );
    let minority = during(on_minority);
    assert!(
        !minority.is_empty(),
        "the host on the minority server tried to write"
    );
    assert_eq!(
        acked(&minority),
        0,
        "a write through the minority server was acknowledged"
    );
    let majority = during(on_majority);
    assert!(
        acked(&majority) > 0,
        "the host on the majority's servers wrote nothing while the minority was cut off"
    );
    let longest = churn::longest_pause(&churn::acknowledged_at(writes[on_majority].iter()), cut, healed);
    // A delete waits until the hosts behind the minority server are counted out (their
    // lease, 12 s by default, and the margin): the majority's side pauses that long.
    eprintln!("longest pause in acknowledged writes on the majority's side: {longest:.2?}");

    churn::check_promises(&writes, &addrs, &p.root);
    p.stop_and_compare();
    eprintln!("took {:.1?}", started.elapsed());
}

#[test]
fn a_host_cut_from_every_server_is_unconfirmed_drops_out_goes_stale_rejects_and_heals_with_nothing_lost() {
    let _one = one_at_a_time();
    let started = Instant::now();
    let Some(mut p) = Partitioned::start() else {
        return;
    };
    let urls = p.cluster.urls();
    let fast = |extra: &[&'static str]| -> Vec<&'static str> { FAST.iter().chain(extra).copied().collect() };
    p.host(&urls, &fast(&["--confirm-timeout", "30s"]));
    p.host(&urls, FAST);
    let cut_off = p.host(
        &urls,
        &fast(&[
            "--serve-past-lease",
            "--stale-serve",
            "3s",
            "--stale-reject",
            "6s",
        ]),
    );
    settled(&p.cluster, LOG);
    let (revoked_id, revoked) = p.create(0, "revoked");
    let (_, kept) = p.create(1, "kept");
    p.converged();

    p.net.cut(&p.nodes[cut_off], CLIENTS);
    let cut = Instant::now();
    let answer = p.call(0, "DELETE", &format!("/v1/keys/{revoked_id}"), None);
    let answered = cut.elapsed();
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = answer.json();
    assert_eq!(answer["unconfirmed"], json!(["h2"]), "{answer}");
    assert!(
        answered < Duration::from_secs(5),
        "answered at the host's lease, not the confirmation timeout: {answered:?}"
    );
    eprintln!("the revocation named h2 unconfirmed after {answered:.2?} (lease 1 s, margin 300 ms)");
    let status = p.call(0, "GET", "/v1/fleet", None).json();
    let seen = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "h2")
        .cloned()
        .unwrap();
    assert_eq!(seen["live"], json!(false), "{status}");
    // Cut off, it serves what it had (it serves past its lease) until it goes stale.
    assert_eq!(
        p.auth(cut_off, &revoked),
        200,
        "h2 had not heard of the revocation"
    );
    eventually(20, "h2 reports itself stale", || {
        let (status, body) = p.health(cut_off);
        status == 503 && body["reason"] == "stale"
    });
    let stale = cut.elapsed();
    assert_eq!(
        p.auth(cut_off, &kept),
        200,
        "between the limits it still verifies"
    );
    eventually(20, "h2 rejects every key", || p.auth(cut_off, &kept) == 403);
    let rejecting = cut.elapsed();
    // Its limits count from its last contact, a heartbeat or two (100 ms each) before the
    // cut: stale at 3 s, rejecting at 6 s.
    assert!(
        stale >= Duration::from_millis(2500) && rejecting >= Duration::from_millis(5500),
        "stale after {stale:?}, rejecting after {rejecting:?}"
    );
    eprintln!("h2 cut off: stale after {stale:.2?}, rejecting every key after {rejecting:.2?}");

    // Written while it was away.
    let (_, meanwhile) = p.create(1, "meanwhile");
    let (gone_id, gone) = p.create(0, "gone");
    p.call(1, "DELETE", &format!("/v1/keys/{gone_id}"), None);

    p.net.heal(&p.nodes[cut_off], CLIENTS);
    let healed = Instant::now();
    eventually(60, "h2 heals", || {
        p.health(cut_off).0 == 200 && p.auth(cut_off, &meanwhile) == 200
    });
    eprintln!("h2 verified again {:.2?} after the cut healed", healed.elapsed());
    p.converged();
    for i in 0..3 {
        assert_eq!(p.auth(i, &kept), 200, "host {i}");
        assert_eq!(p.auth(i, &meanwhile), 200, "host {i}");
        assert_ne!(p.auth(i, &revoked), 200, "host {i}");
        assert_ne!(p.auth(i, &gone), 200, "host {i}");
    }
    // It takes writes again, and everyone sees them.
    p.create(cut_off, "after");
    p.converged();
    let logged = p.hosts[cut_off].served.as_ref().unwrap().errors();
    for line in [
        "lost the shared log (NATS)",
        "stale: the shared log has not answered",
        "in touch with the shared log again",
    ] {
        assert!(logged.contains(line), "{line}: {logged}");
    }
    p.stop_and_compare();
    eprintln!("took {:.1?}", started.elapsed());
}

/// A test that fails with its namespaces made, servers running and a host started leaves
/// nothing behind: no namespace, no interface, no process.
#[test]
fn a_failing_test_leaves_no_namespace_interface_or_process_behind() {
    let _one = one_at_a_time();
    let made: std::sync::Mutex<Option<(String, String)>> = std::sync::Mutex::new(None);
    let outcome = std::panic::catch_unwind(|| {
        let Some(mut p) = Partitioned::start() else {
            return;
        };
        let urls = p.cluster.urls();
        p.host(&urls, &[]);
        let dir = p.dir.path().to_str().unwrap().to_owned();
        assert!(running(&dir), "its servers and host run");
        assert!(namespaces(p.net.tag()) > 0);
        *made.lock().unwrap() = Some((p.net.tag().to_owned(), dir));
        panic!("a failing test");
    });
    let Some((tag, dir)) = made.into_inner().unwrap() else {
        assert!(outcome.is_ok(), "failed before it made anything");
        return;
    };
    assert!(outcome.is_err());
    assert_eq!(namespaces(&tag), 0, "namespaces left behind");
    let links = String::from_utf8(Command::new("ip").args(["-o", "link"]).output().unwrap().stdout).unwrap();
    assert!(!links.contains(&tag), "interfaces left behind: {links}");
    assert!(!running(&dir), "processes left behind");
}

/// How many network namespaces named under `tag` exist.
fn namespaces(tag: &str) -> usize {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(tag))
        .count()
}

/// The tests of this file take turns: each runs six servers and hosts.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
