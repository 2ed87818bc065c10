//! Many hosts, one ledger: `keyledger serve --nats` hosts, each a process with its own
//! store, on one real nats-server (JetStream, its own directory, a free loopback port).
//!
//! Convergence, races from different hosts, `kill -9` of the server and of a host during
//! writes, a host starting from nothing, a rogue publisher without the chain key (skipped), a host
//! that loses the server (its staleness limits), and the refusals at start (no chain key,
//! a local log that is not a prefix of the stream). After the writes, every host's store
//! is checked (`keyledger check`) and exported: the exports are byte for byte the same.

#![allow(clippy::unwrap_used)]

#[path = "support/fleet.rs"]
mod hosts;
#[path = "support/nats.rs"]
mod nats;
#[path = "support/relay.rs"]
mod relay;
#[path = "support/served.rs"]
mod served;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use hosts::{Answer, Fleet, admin, cli, eventually, http};
use served::{Served, keyledger, super_admin_key};

#[test]
fn keys_created_on_each_host_verify_on_all_and_a_delete_is_rejected_everywhere_when_it_returns() {
    let mut fleet = Fleet::start(&["a", "b", "c"], &[]);
    let mut keys = Vec::new();
    for i in 0..3 {
        keys.push(fleet.create(i, &format!("bot of {i}")));
    }
    fleet.converged(4);
    for (id, secret) in &keys {
        for i in 0..3 {
            assert_eq!(fleet.auth(i, secret), 200, "key {id} on host {i}");
        }
    }
    // Every delete, through any host, is rejected on every host the moment it returns.
    for (n, (id, secret)) in keys.iter().enumerate() {
        let through = (n + 1) % 3;
        let answer = fleet.call(through, "DELETE", &format!("/v1/keys/{id}"), None);
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(
            answer.json().get("unconfirmed").is_none(),
            "every live host confirmed: {answer:?}"
        );
        for i in 0..3 {
            assert_eq!(fleet.auth(i, secret), 401, "deleted key {id} on host {i}");
        }
    }
    let status = fleet.call(0, "GET", "/v1/fleet", None).json();
    let hosts: BTreeSet<&str> = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, BTreeSet::from(["a", "b", "c"]), "{status}");
    let audit = fleet.stop_and_compare();
    assert_eq!(audit.len(), 7);
}

/// Exactly one answer is a 200; every other is `status` with the error `kind`.
fn one_winner(answers: &[Answer], status: u16, kind: &str) {
    let won = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(won, 1, "{answers:?}");
    for lost in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(
            (lost.status, lost.json()["error"].as_str()),
            (status, Some(kind)),
            "{lost:?}"
        );
    }
}

/// Three hosts act on the same key at the same moment: one delete wins and the others get
/// `key_deleted`; one whitelisting of the same address wins and the others get
/// `whitelist_unchanged`; rolls all land, one after another, and only the last secret
/// verifies. No record is lost or doubled, and every host ends with the same log.
#[test]
fn concurrent_changes_to_one_key_from_different_hosts_have_one_winner_and_typed_errors() {
    let mut fleet = Fleet::start(&["a", "b", "c"], &[]);
    let race = |fleet: &Fleet, method: &str, path: &str, body: Option<Value>| -> Vec<Answer> {
        let barrier = Arc::new(Barrier::new(3));
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|i| {
                    let barrier = Arc::clone(&barrier);
                    let body = body.clone();
                    let (addr, root) = (fleet.addr(i), fleet.root.clone());
                    s.spawn(move || {
                        barrier.wait();
                        admin(addr, &root, method, path, body)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let mut expected_records = 1;
    for round in 0..5 {
        let (id, secret) = fleet.create(round % 3, &format!("contested {round}"));
        expected_records += 1;
        fleet.converged(expected_records);

        let answers = race(
            &fleet,
            "POST",
            &format!("/v1/keys/{id}/whitelist"),
            Some(json!({"ips": ["10.9.0.0/16"]})),
        );
        one_winner(&answers, 409, "whitelist_unchanged");
        expected_records += 1;

        let answers = race(&fleet, "POST", &format!("/v1/keys/{id}/roll"), None);
        assert!(
            answers.iter().all(|a| a.status == 200),
            "round {round}: {answers:?}"
        );
        expected_records += 3;
        fleet.converged(expected_records);
        let secrets: Vec<String> = answers
            .iter()
            .map(|a| a.json()["key"].as_str().unwrap().to_owned())
            .collect();
        let verifying: Vec<&String> = secrets
            .iter()
            .filter(|s| http(fleet.addr(0), "GET", "/auth", Some(s), None).unwrap().status != 401)
            .collect();
        assert_eq!(
            verifying.len(),
            1,
            "round {round}: exactly the last roll's secret"
        );
        assert_eq!(fleet.auth(1, &secret), 401, "the first secret is gone");

        let answers = race(&fleet, "DELETE", &format!("/v1/keys/{id}"), None);
        one_winner(&answers, 404, "key_deleted");
        expected_records += 1;
        for i in 0..3 {
            assert_eq!(fleet.auth(i, verifying[0]), 401);
        }
    }
    fleet.converged(expected_records);
    let audit = fleet.stop_and_compare();
    assert_eq!(audit.len() as u64, expected_records);
}

/// Creates keys through the host at `addr` in a loop until told to stop: (name, id if acknowledged).
fn burst(addr: SocketAddr, root: &str, prefix: &str, stop: &AtomicBool) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Acquire) {
        let name = format!("{prefix}-{n}");
        n += 1;
        let answer = http(
            addr,
            "POST",
            "/v1/keys",
            Some(root),
            Some(&json!({"name": name, "roles": ["bot"]})),
        );
        let id = answer
            .filter(|a| a.status == 201)
            .map(|a| a.json()["id"].as_str().unwrap().to_owned());
        out.push((name, id));
    }
    out
}

/// The live keys on host `i`, by name (once it verifies keys again: after an outage, a
/// host rejects every key until it is heard and has caught up).
fn names_on(fleet: &Fleet, i: usize) -> BTreeMap<String, String> {
    let mut answer = fleet.call(i, "GET", "/v1/keys?unpaged=true", None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while answer.status == 503 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        answer = fleet.call(i, "GET", "/v1/keys?unpaged=true", None);
    }
    assert_eq!(answer.status, 200, "{answer:?}");
    answer
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap().to_owned(),
                k["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `kill -9` of nats-server while two hosts create keys, then a restart: every
/// acknowledged key is on every host; one that was not is on all or on none.
#[test]
fn killing_the_server_mid_burst_loses_no_acknowledged_write_and_no_host_diverges() {
    let mut fleet = Fleet::start(&["a", "b", "c"], &["--nats-timeout", "1s"]);
    let stop = AtomicBool::new(false);
    let (from_a, from_b) = std::thread::scope(|s| {
        let (a, b, root) = (fleet.addr(0), fleet.addr(1), fleet.root.as_str());
        let stop = &stop;
        let a = s.spawn(move || burst(a, root, "a", stop));
        let b = s.spawn(move || burst(b, root, "b", stop));
        std::thread::sleep(Duration::from_millis(800));
        fleet.nats.lock().unwrap().kill9();
        // Longer than a host waits for an append and its one resend (1 s each here): the
        // writes in flight then are not acknowledged, and may or may not land.
        std::thread::sleep(Duration::from_millis(3500));
        fleet.nats.lock().unwrap().restart();
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Release);
        (a.join().unwrap(), b.join().unwrap())
    });
    let acknowledged: Vec<&(String, Option<String>)> = from_a
        .iter()
        .chain(&from_b)
        .filter(|(_, id)| id.is_some())
        .collect();
    let failed = from_a.len() + from_b.len() - acknowledged.len();
    assert!(
        acknowledged.len() > 10,
        "the burst wrote: {} acknowledged",
        acknowledged.len()
    );
    assert!(failed > 0, "the outage left writes unacknowledged");
    // Everyone catches up with the stream.
    let top = (0..3).map(|i| fleet.last_seq(i)).max().unwrap();
    fleet.converged(top);
    let on: Vec<BTreeMap<String, String>> = (0..3).map(|i| names_on(&fleet, i)).collect();
    for (name, id) in &acknowledged {
        for (i, keys) in on.iter().enumerate() {
            assert_eq!(keys.get(name), id.as_ref(), "acknowledged {name} on host {i}");
        }
    }
    assert!(on[0] == on[1] && on[1] == on[2], "the hosts hold the same keys");
    eprintln!(
        "{} acknowledged, {failed} failed ({} of those landed anyway)",
        acknowledged.len(),
        from_a
            .iter()
            .chain(&from_b)
            .filter(|(n, id)| id.is_none() && on[0].contains_key(n))
            .count()
    );
    fleet.stop_and_compare();
}

/// `kill -9` of a host while another writes, then a restart on the same directory: it
/// replays its own log and reads only the stream's tail.
#[test]
fn a_host_killed_during_writes_catches_up_from_its_log_and_the_stream() {
    let mut fleet = Fleet::start(&["a", "b", "c"], &[]);
    let stop = AtomicBool::new(false);
    let written = std::thread::scope(|s| {
        let (a, b, root) = (fleet.addr(0), fleet.addr(1), fleet.root.as_str());
        let stop = &stop;
        let a = s.spawn(move || burst(a, root, "a", stop));
        let b = s.spawn(move || burst(b, root, "b", stop));
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Release);
        let mut written = a.join().unwrap();
        written.extend(b.join().unwrap());
        written
    });
    assert!(
        written.iter().all(|(_, id)| id.is_some()),
        "no failures without faults"
    );
    // Kill b mid-burst of a's writes.
    let stop = AtomicBool::new(false);
    let (a, root) = (fleet.addr(0), fleet.root.clone());
    let more = std::thread::scope(|s| {
        let (stop, root) = (&stop, &root);
        let a = s.spawn(move || burst(a, root, "again", stop));
        std::thread::sleep(Duration::from_millis(300));
        let served = fleet.hosts[1].served.as_mut().unwrap();
        served.child.kill().unwrap();
        served.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Release);
        a.join().unwrap()
    });
    assert!(
        more.iter().all(|(_, id)| id.is_some()),
        "a dead host does not stop the others' writes"
    );
    fleet.hosts[1].served = None;
    fleet.start_host(1);
    let top = fleet.last_seq(0);
    fleet.converged(top);
    let on_b = names_on(&fleet, 1);
    for (name, id) in written.iter().chain(&more) {
        assert_eq!(on_b.get(name), id.as_ref(), "{name} on the restarted host");
    }
    fleet.stop_and_compare();
}

/// A store chained with a key of its own (not the fleet's), with a super-admin key for
/// each name, serving on a stream of its own (`rogue`) that it bootstrapped: its messages
/// are well formed, and made without the fleet's chain key. Returns it serving, and the
/// last key's secret.
fn rogue(fleet: &Fleet, names: &[&str]) -> (Served, String) {
    let dir = fleet.dir.path().join("rogue");
    let key = fleet.dir.path().join("rogue.key");
    let key = key.to_str().unwrap();
    cli(&dir, &["chain-key", "new", key]);
    let mut secret = String::new();
    for name in names {
        secret = super_admin_key(&dir, Path::new(key), name, &[]);
    }
    let args = [
        "--chain-key-file",
        key,
        "--nats",
        &fleet.url(),
        "--stream",
        "rogue",
        "--host-id",
        "rogue",
    ];
    (Served::start(&dir, &args), secret)
}

/// Publishes message `position` of the rogue stream on the fleet's subject, as a client
/// allowed to publish there would.
fn republish(fleet: &Fleet, position: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(fleet.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream("rogue").await.unwrap();
        let message = stream.direct_get(position).await.unwrap().payload;
        js.publish("keyledger.keyledger.log", message)
            .await
            .unwrap()
            .await
            .unwrap();
    });
}

/// Waits until host `i` has skipped `n` messages that are not the fleet's; returns its
/// `/v1/fleet`.
fn skipped(fleet: &Fleet, i: usize, n: u64) -> Value {
    let mut status = Value::Null;
    eventually(20, &format!("host {i} skips {n} foreign messages"), || {
        status = fleet.call(i, "GET", "/v1/fleet", None).json();
        status["foreign_messages"].as_u64() == Some(n)
    });
    status
}

/// A client that may publish on the log's subject but lacks the chain key: its message
/// (well formed, from another fleet's history, so out of place and sealed with another
/// key) is not the fleet's. Every host skips it, counts it and names it, stays healthy,
/// and takes writes after it.
#[test]
fn a_rogue_message_from_another_fleet_is_skipped_and_counted_and_never_applied() {
    let mut fleet = Fleet::start(&["a", "b"], &[]);
    let (mut other, _) = rogue(&fleet, &["first", "forged"]);
    assert!(other.terminate().is_some());
    // Its first batch (message 2) holds records 1 and 2; the fleet is at record 1.
    republish(&fleet, 2);
    for i in 0..2 {
        let status = skipped(&fleet, i, 1);
        assert!(
            status["last_foreign"]
                .as_str()
                .unwrap()
                .contains("not sealed with the fleet's chain key"),
            "{status}"
        );
        assert_eq!(fleet.health(i).status, 200);
        assert_eq!(fleet.last_seq(i), 1, "nothing applied");
    }
    fleet.create(1, "after");
    fleet.converged(2);
    let audit = fleet.stop_and_compare();
    assert_eq!(audit.len(), 2);
    assert!(audit.iter().all(|e| e["name"] != "forged"));
}

/// A message that holds exactly the next record, chained without the fleet's key: in the
/// right place, it is still not the fleet's (its seal does not pass), and is skipped.
#[test]
fn a_record_in_the_right_place_without_the_chain_key_is_skipped() {
    let mut fleet = Fleet::start(&["a"], &[]);
    let (mut other, root) = rogue(&fleet, &["first", "root-admin"]);
    // Record 3 of the rogue store, in its stream's message 3 (after its genesis and its
    // bootstrap).
    let created = http(
        other.addr,
        "POST",
        "/v1/keys",
        Some(&root),
        Some(&json!({"name": "forged", "roles": ["super-admin"], "actor": "root"})),
    )
    .unwrap();
    assert_eq!(created.status, 201, "{created:?}");
    assert!(other.terminate().is_some());
    // The fleet's stream holds record 1; give it a record 2, so record 3 fits.
    fleet.create(0, "real");
    republish(&fleet, 3);
    skipped(&fleet, 0, 1);
    assert_eq!(fleet.health(0).status, 200);
    assert_eq!(fleet.last_seq(0), 2);
    fleet.create(0, "after");
    let audit = fleet.stop_and_compare();
    assert_eq!(audit.len(), 3);
    assert!(audit.iter().all(|e| e["name"] != "forged"));
}

/// A host that loses the server is not ready at once (`/readyz`), keeps verifying for a
/// while, reports 503 health past the first limit, rejects every key past the second, and
/// recovers once the server is back and it has caught up; it logs each change.
#[test]
fn a_host_that_loses_the_server_goes_unhealthy_then_rejects_then_recovers() {
    let mut fleet = Fleet::start(
        &["a", "b"],
        &[
            "--serve-past-lease",
            "--stale-serve",
            "2s",
            "--stale-reject",
            "4s",
        ],
    );
    let (_, secret) = fleet.create(0, "bot");
    fleet.converged(2);
    let ready = |fleet: &Fleet| http(fleet.addr(1), "GET", "/readyz", None, None).unwrap();
    assert_eq!(ready(&fleet).status, 200, "{:?}", ready(&fleet));
    // The host last heard from the server up to a heartbeat (100 ms) or two before it died.
    let lost = Instant::now() - Duration::from_millis(200);
    fleet.nats.lock().unwrap().kill9();
    assert_eq!(fleet.auth(1, &secret), 200, "serves from what it has at first");
    eventually(20, "not ready (stale) once out of touch", || {
        let r = ready(&fleet);
        r.status == 503 && r.json()["reason"] == "stale" && r.json()["status"] == "not_ready"
    });
    assert_eq!(
        http(fleet.addr(1), "GET", "/livez", None, None).unwrap().status,
        200
    );
    eventually(20, "health goes 503 (stale)", || {
        let h = fleet.health(1);
        h.status == 503 && h.json()["reason"] == "stale"
    });
    assert!(
        lost.elapsed() >= Duration::from_secs(2),
        "{:?}: {}",
        lost.elapsed(),
        fleet.health(1).body
    );
    assert_eq!(fleet.auth(1, &secret), 200, "still verifies between the limits");
    // Forward-auth answers a stale host with a 403 that blames no key (nginx turns a 503 into a 500).
    eventually(20, "keys are rejected (stale)", || fleet.auth(1, &secret) == 403);
    assert!(lost.elapsed() >= Duration::from_secs(4));
    let body = http(fleet.addr(1), "GET", "/auth", Some(&secret), None)
        .unwrap()
        .json();
    assert_eq!(body["reason"], "stale");
    fleet.nats.lock().unwrap().restart();
    eventually(60, "recovers", || {
        fleet.auth(1, &secret) == 200 && fleet.health(1).status == 200
    });
    eventually(20, "ready again", || ready(&fleet).status == 200);
    // And takes writes again.
    fleet.create(1, "after");
    fleet.converged(3);
    let logged = fleet.stop(1);
    for line in [
        "joined the fleet",
        "lost the shared log (NATS)",
        "stale: the shared log has not answered",
        "in touch with the shared log again",
    ] {
        assert!(logged.contains(line), "{line}: {logged}");
    }
    fleet.stop_and_compare();
}

/// Fleet mode needs the chain key; a store whose log is not a prefix of the stream does
/// not start, and says where they differ.
#[test]
fn a_host_without_the_chain_key_or_with_a_foreign_log_does_not_start() {
    let mut fleet = Fleet::start(&["a"], &[]);
    fleet.create(0, "one");
    let url = fleet.url();
    let bare = fleet.dir.path().join("bare");
    let out = keyledger(&bare)
        .args(["serve", "--listen", "127.0.0.1:0", "--nats", &url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chain key"),
        "{out:?}"
    );

    // A store with the right key but its own history.
    let other = fleet.dir.path().join("other");
    let ck = fleet.chain_key.to_str().unwrap().to_owned();
    super_admin_key(&other, &fleet.chain_key, "not-the-root", &[]);
    let out = keyledger(&other)
        .args([
            "--chain-key-file",
            &ck,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--nats",
            &url,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stream message 2") && stderr.contains("record 1 differs"),
        "{stderr}"
    );
    fleet.stop_and_compare();
}

/// Sends a signal to a host's process (`STOP` pauses it, `CONT` resumes it).
fn signal(fleet: &Fleet, i: usize, sig: &str) {
    let pid = fleet.hosts[i].served.as_ref().unwrap().child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// A host that is live but does not apply (paused) is named in the revocation's answer
/// when the wait ends; once its lease ends it is no longer waited for at all. Resumed, it
/// catches up and rejects the key.
#[test]
fn a_revocation_names_a_live_host_that_did_not_confirm_and_drops_a_silent_one() {
    let mut fleet = Fleet::start(&["a", "b"], &["--confirm-timeout", "300ms"]);
    let (id, secret) = fleet.create(0, "bot");
    fleet.converged(2);
    signal(&fleet, 1, "-STOP");
    let answer = fleet.call(0, "DELETE", &format!("/v1/keys/{id}"), None);
    signal(&fleet, 1, "-CONT");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["unconfirmed"], json!(["b"]), "{answer:?}");
    eventually(20, "b catches up", || fleet.auth(1, &secret) == 401);

    // With a wait longer than the lease (1 s here), a paused host drops out of it.
    if let Some(mut a) = fleet.hosts[0].served.take() {
        assert!(a.terminate().is_some());
    }
    fleet.hosts[0].extra = vec!["--confirm-timeout".into(), "30s".into()];
    fleet.start_host(0);
    let (id, _) = fleet.create(0, "bot 2");
    fleet.converged(4);
    signal(&fleet, 1, "-STOP");
    let started = Instant::now();
    let answer = fleet.call(0, "DELETE", &format!("/v1/keys/{id}"), None);
    let waited = started.elapsed();
    signal(&fleet, 1, "-CONT");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.json().get("unconfirmed").is_none(), "{answer:?}");
    assert!(
        waited < Duration::from_secs(10),
        "dropped out at its lease, not the 30 s wait: {waited:?}"
    );
    fleet.converged(5);
    fleet.stop_and_compare();
}

/// `keyledger fleet` reads the hosts' heads from the shared log without joining.
#[test]
fn the_fleet_command_lists_every_host_with_its_head() {
    let mut fleet = Fleet::start(&["a", "b"], &[]);
    fleet.create(1, "bot");
    fleet.converged(2);
    let url = fleet.url();
    let ck = fleet.chain_key.to_str().unwrap().to_owned();
    eventually(10, "both hosts announce record 2", || {
        let out = cli(
            &fleet.dir.path().join("none"),
            &["--chain-key-file", &ck, "fleet", "--nats", &url, "--json"],
        );
        let hosts: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        hosts.len() == 2
            && hosts
                .iter()
                .all(|h| h["seq"] == 2 && h["live"] == true && h["lag"] == 0)
    });
    let out = cli(
        &fleet.dir.path().join("none"),
        &["--chain-key-file", &ck, "fleet", "--nats", &url],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("2 host(s)") && text.contains("live"), "{text}");
    // `/v1/fleet` wants an admin key, no parameters, and GET.
    let no_key = http(fleet.addr(0), "GET", "/v1/fleet", None, None).unwrap();
    assert_eq!(no_key.status, 401, "{no_key:?}");
    let param = fleet.call(0, "GET", "/v1/fleet?host=a", None);
    assert_eq!(
        (param.status, param.json()["error"].as_str()),
        (400, Some("invalid_input"))
    );
    let post = fleet.call(0, "POST", "/v1/fleet", None);
    assert_eq!(post.status, 405, "{post:?}");
    // A stream name the server could not hold is refused before anything is opened.
    let bad = keyledger(&fleet.dir.path().join("bad"))
        .args([
            "--chain-key-file",
            fleet.chain_key.to_str().unwrap(),
            "fleet",
            "--nats",
            &url,
        ])
        .args(["--stream", "no.dots"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("stream"), "{bad:?}");
    fleet.stop_and_compare();
}

/// `kill -9` of a host at several moments while it opens: replaying its own log, catching
/// up from the stream (its local writes not yet synced), announcing. Started again each
/// time, it opens, catches up and ends with the others' log, which checks.
#[test]
fn a_host_killed_while_it_opens_and_catches_up_starts_again_and_converges() {
    let mut fleet = Fleet::start(&["a", "b"], &[]);
    let stop = AtomicBool::new(false);
    let (a, root) = (fleet.addr(0), fleet.root.clone());
    std::thread::scope(|s| {
        let (stop, root) = (&stop, &root);
        let writer = s.spawn(move || burst(a, root, "long", stop));
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Release);
        writer.join().unwrap();
    });
    let top = fleet.last_seq(0);
    // b starts again from nothing, and is killed at moments of its open.
    if let Some(mut b) = fleet.hosts[1].served.take() {
        assert!(b.terminate().is_some());
    }
    std::fs::remove_dir_all(&fleet.hosts[1].db).unwrap();
    let args = fleet.args(1);
    for delay in [5, 20, 60, 150, 400] {
        let mut child = keyledger(&fleet.hosts[1].db)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    fleet.start_host(1);
    fleet.converged(top);
    assert_eq!(names_on(&fleet, 0), names_on(&fleet, 1));
    fleet.stop_and_compare();
}

/// A person revoked through one host: when the answer comes, every admin key acting as
/// them is rejected on every host, and the answer confirms it as a delete's does.
#[test]
fn revoking_a_person_through_one_host_stops_their_admin_keys_on_every_host_when_it_returns() {
    let mut fleet = Fleet::start(&["a", "b"], &[]);
    let carol = fleet.call(
        0,
        "POST",
        "/v1/keys",
        Some(json!({"name": "carol admin", "roles": ["admin"], "actor": "carol"})),
    );
    assert_eq!(carol.status, 201, "{carol:?}");
    let carol = carol.json();
    let secret = carol["key"].as_str().unwrap();
    fleet.converged(2);
    for i in 0..2 {
        let me = admin(fleet.addr(i), secret, "GET", "/v1/whoami", None);
        assert_eq!(me.json()["actor"], "carol", "host {i}");
    }
    let answer = fleet.call(1, "POST", "/v1/actors/carol/revoke", None);
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = answer.json();
    assert_eq!(answer["revoked"], json!([carol["id"]]));
    assert!(
        answer.get("unconfirmed").is_none(),
        "every live host confirmed: {answer}"
    );
    for i in 0..2 {
        assert_eq!(fleet.auth(i, secret), 401, "host {i}");
    }
    let audit = fleet.stop_and_compare();
    assert_eq!(audit.last().unwrap()["kind"], "actor_revoked");
}
