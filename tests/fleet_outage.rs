//! A fleet host (re)started while NATS is out of reach, through the real binary and a real
//! nats-server: killed, never started, cut off by a relay, started again later on the same
//! port. With a replica the fleet heard, the host starts: it verifies what it holds under
//! its staleness limits, counted from when the fleet last heard it (a restart resets
//! nothing), answers `/healthz` 503 `stale`, refuses writes with 503 `fleet_not_joined`
//! (exit 5 through `--server`), and joins once NATS answers: it catches up with what the
//! others wrote meanwhile, announces, and is healthy again. With an empty directory it does
//! not start.

#![allow(clippy::unwrap_used)]

#[path = "support/fleet.rs"]
mod hosts;
#[path = "support/nats.rs"]
mod nats;
#[path = "support/relay.rs"]
mod relay;
#[path = "support/served.rs"]
mod served;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use hosts::{Fleet, eventually, http};
use served::keyledger;

/// `/readyz` on host `i`.
fn ready(fleet: &Fleet, i: usize) -> Value {
    http(fleet.addr(i), "GET", "/readyz", None, None).unwrap().json()
}

/// A create through host `i`: its status and error kind.
fn try_create(fleet: &Fleet, i: usize, name: &str) -> (u16, Value) {
    let answer = fleet.call(
        i,
        "POST",
        "/v1/keys",
        Some(json!({"name": name, "roles": ["bot"]})),
    );
    (answer.status, answer.json())
}

/// Kills host `i` with SIGKILL, as a crash would.
fn kill9(fleet: &mut Fleet, i: usize) {
    let mut served = fleet.hosts[i].served.take().unwrap();
    served.child.kill().unwrap();
    served.child.wait().unwrap();
}

/// Host b reaches NATS through a relay the test cuts: restarted meanwhile, it starts from
/// its replica, verifies, answers 503 `stale` and refuses writes (over HTTP and through the
/// command line's `--server`), while host a goes on writing; the relay restored, b joins,
/// catches up with a's writes, announces itself to a, and takes writes again.
#[test]
fn a_host_restarted_while_nats_is_out_of_reach_serves_its_replica_and_joins_when_it_answers() {
    let quick: &[&str] = &["--heartbeat", "100ms", "--lease", "1s"];
    // b's lease outlasts the test's outage; its requests give up after a second.
    let patient: &[&str] = &["--heartbeat", "100ms", "--lease", "30s", "--nats-timeout", "1s"];
    let mut fleet = Fleet::start_each(&[("a", quick, false), ("b", patient, true)]);
    let (_, before) = fleet.create(0, "before");
    fleet.converged(2);
    assert_eq!(fleet.auth(1, &before), 200);

    fleet.relay(1).cut();
    fleet.stop(1);
    fleet.start_host(1);
    assert_eq!(fleet.auth(1, &before), 200, "verifies from its replica");
    let health = fleet.health(1);
    assert_eq!(health.status, 503, "{health:?}");
    let health = health.json();
    assert_eq!(health["reason"], "stale", "{health}");
    let causes = health["fleet"]["causes"].to_string();
    assert!(causes.contains("not joined"), "{health}");
    assert_eq!(ready(&fleet, 1)["reason"], "stale");
    let (status, refused) = try_create(&fleet, 1, "refused");
    assert_eq!(
        (status, refused["error"].as_str()),
        (503, Some("fleet_not_joined")),
        "{refused}"
    );
    // The command line through this host: the same error, exit 5 (a store error).
    let out = Command::new(env!("CARGO_BIN_EXE_keyledger"))
        .env_remove("KEYLEDGER_DB")
        .env("KEYLEDGER_API_KEY", &fleet.root)
        .args(["--server", &format!("http://{}", fleet.addr(1))])
        .args(["create", "--name", "refused", "--role", "bot"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("not joined its fleet"), "{stderr}");

    // Written meanwhile through a, which NATS still answers.
    let (_, meanwhile) = fleet.create(0, "meanwhile");
    assert_ne!(
        fleet.auth(1, &meanwhile),
        200,
        "not applied: NATS is out of reach"
    );
    assert_eq!(fleet.last_seq(1), 2, "nothing written on b");

    fleet.relay(1).restore();
    eventually(30, "b joins and catches up", || {
        fleet.auth(1, &meanwhile) == 200 && fleet.health(1).status == 200
    });
    eventually(10, "b is ready", || ready(&fleet, 1)["status"] == "ready");
    eventually(10, "a hears b announce", || {
        fleet.fleet_status(0)["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["host"] == "b" && h["live"] == true && h["seq"] == 3)
    });
    fleet.create(1, "after");
    fleet.converged(4);
    let logged = fleet.stop(1);
    for line in [
        "the shared log is out of reach",
        "started from this host's replica",
        "joined the fleet",
    ] {
        assert!(logged.contains(line), "{line}: {logged}");
    }
    let audit = fleet.stop_and_compare();
    let names: Vec<&str> = audit.iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(!names.contains(&"refused"), "{names:?}");
}

/// A revocation confirmed on b's word (its announced head), then b killed at once and
/// started again with NATS out of reach: b holds the revocation, since it announces only
/// what its log holds durably; the key is rejected there, and a live one verifies.
#[test]
fn a_host_killed_after_confirming_a_revocation_and_restarted_offline_still_rejects_the_key() {
    let quick: &[&str] = &["--heartbeat", "100ms", "--lease", "1s"];
    let patient: &[&str] = &["--heartbeat", "100ms", "--lease", "30s", "--nats-timeout", "1s"];
    let mut fleet = Fleet::start_each(&[("a", quick, false), ("b", patient, true)]);
    let (_, live) = fleet.create(0, "live");
    for round in 0..3 {
        let (id, secret) = fleet.create(0, &format!("revoked {round}"));
        eventually(10, "b verifies it", || fleet.auth(1, &secret) == 200);
        let deleted = fleet.call(0, "DELETE", &format!("/v1/keys/{id}"), None);
        assert_eq!(deleted.status, 200, "{deleted:?}");
        assert!(deleted.json().get("unconfirmed").is_none(), "{deleted:?}");
        // At once: whatever b had not made durable is lost with it.
        fleet.relay(1).cut();
        kill9(&mut fleet, 1);
        fleet.start_host(1);
        assert_eq!(
            fleet.auth(1, &live),
            200,
            "round {round}: serves from its replica"
        );
        assert_ne!(
            fleet.auth(1, &secret),
            200,
            "round {round}: a revocation b confirmed verifies there again"
        );
        fleet.relay(1).restore();
        eventually(30, "b joins", || fleet.health(1).status == 200);
    }
    fleet.stop_and_compare();
}

/// NATS killed; the host, killed and started again, then stopped and started twice more,
/// still counts its
/// staleness from when the fleet last heard it before NATS died: `/healthz` says so, it
/// verifies until its limit counted from then (not from a restart), and, restarted past it,
/// rejects every key at once. NATS started again on the same port: the host joins.
#[test]
fn restarts_during_an_outage_do_not_reset_the_stale_clock() {
    let limit = Duration::from_secs(6);
    let mut fleet = Fleet::start(
        &["a"],
        &[
            "--serve-past-lease",
            "--stale-serve",
            "2s",
            "--stale-reject",
            "6s",
        ],
    );
    let (_, secret) = fleet.create(0, "kept");
    fleet.converged(2);
    // The fleet last heard the host before this.
    let lost = Instant::now();
    fleet.nats.lock().unwrap().kill9();
    std::thread::sleep(Duration::from_millis(800));
    // Killed: what its replica keeps was kept while it ran.
    kill9(&mut fleet, 0);
    fleet.start_host(0);
    let stale_ms = |fleet: &Fleet| fleet.health(0).json()["fleet"]["stale_ms"].as_u64().unwrap();
    for restart in 0..2 {
        let since = lost.elapsed();
        assert!(
            since < limit - Duration::from_millis(1500),
            "{since:?}: the test ran slow"
        );
        assert_eq!(fleet.auth(0, &secret), 200, "restart {restart}: within the limit");
        let health = fleet.health(0);
        assert_eq!(
            (health.status, health.json()["reason"].as_str()),
            (503, Some("stale"))
        );
        let stale = stale_ms(&fleet);
        assert!(
            stale + 50 >= since.as_millis() as u64,
            "restart {restart}: stale for {stale} ms, {since:?} after the last contact"
        );
        std::thread::sleep(Duration::from_millis(1000));
        fleet.stop(0);
        fleet.start_host(0);
    }
    eventually(10, "keys are rejected (stale)", || fleet.auth(0, &secret) == 403);
    let at = lost.elapsed();
    // Kept at most a second before the last contact, so it may close up to that much
    // early; never later than the limit after the last contact.
    assert!(
        at >= limit - Duration::from_millis(1200) && at < limit + Duration::from_millis(800),
        "{at:?}"
    );
    let answer = http(fleet.addr(0), "GET", "/auth", Some(&secret), None).unwrap();
    assert_eq!(answer.json()["reason"], "stale");
    fleet.stop(0);
    fleet.start_host(0);
    assert_eq!(fleet.auth(0, &secret), 403, "past its limit from the start");
    let health = fleet.health(0).json();
    assert!(health["fleet"]["rejecting"].as_bool().unwrap(), "{health}");

    fleet.nats.lock().unwrap().restart();
    eventually(60, "joins once NATS answers", || {
        fleet.auth(0, &secret) == 200 && fleet.health(0).status == 200
    });
    fleet.create(0, "after");
    fleet.converged(3);
    fleet.stop_and_compare();
}

/// With an empty directory, or a store that never joined a fleet, and no NATS (none was
/// ever started on the port), the host does not start, and says why.
#[test]
fn with_no_replica_and_no_nats_a_host_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let chain_key = dir.path().join("chain.key");
    hosts::cli(
        &dir.path().join("unused"),
        &["chain-key", "new", chain_key.to_str().unwrap()],
    );
    let port = nats::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let single = dir.path().join("single");
    served::super_admin_key(&single, &chain_key, "root-admin", &[]);
    for db in [dir.path().join("empty"), single] {
        let out = keyledger(&db)
            .args(["--chain-key-file", chain_key.to_str().unwrap()])
            .args(["serve", "--listen", "127.0.0.1:0", "--nats", &url])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{stderr}");
        assert!(
            stderr.contains("cannot connect") && stderr.contains("cannot start without it"),
            "{stderr}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
    }
}
