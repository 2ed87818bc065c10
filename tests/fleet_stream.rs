//! The stream under a fleet, attacked by a NATS client without the chain key: one that may
//! publish on the log's subject (a single byte, a genuine message replayed at another
//! place), and one with the rights to manage the stream (delete it, create it again and
//! put genuine old messages back; change its limits, subjects or deny-delete). Real
//! nats-server, real `keyledger serve --nats` hosts, a plain `async-nats` client as the
//! attacker.

#![allow(clippy::unwrap_used)]

#[path = "support/fleet.rs"]
mod hosts;
#[path = "support/nats.rs"]
mod nats;
#[path = "support/relay.rs"]
mod relay;
#[path = "support/served.rs"]
mod served;

use std::future::IntoFuture;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use serde_json::{Value, json};

use hosts::{Fleet, Host, eventually};
use keyledger::{Actor, ChainKey, FleetOptions, Integrity, KeyStore, NewKey};
use served::keyledger;

/// A change to the stream's settings.
type Change = fn(&mut stream::Config);

const SUBJECT: &str = "keyledger.keyledger.log";
const STREAM: &str = "keyledger";

/// A plain NATS client, as an attacker with whatever rights the server gives it.
struct Client {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
}

impl Client {
    fn new(url: &str) -> Client {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let js = rt.block_on(async { jetstream::new(async_nats::connect(url).await.unwrap()) });
        Client { rt, js }
    }

    /// Publishes `payload` on the log's subject; returns the position the stream gave it.
    fn publish(&self, payload: Vec<u8>) -> u64 {
        self.rt.block_on(async {
            let ack = self.js.publish(SUBJECT, payload.into()).await.unwrap();
            ack.await.unwrap().sequence
        })
    }

    /// Every message of the stream, in order.
    fn messages(&self) -> Vec<Vec<u8>> {
        self.rt.block_on(async {
            let mut stream = self.js.get_stream(STREAM).await.unwrap();
            let last = stream.info().await.unwrap().state.last_sequence;
            let mut out = Vec::new();
            for position in 1..=last {
                out.push(stream.direct_get(position).await.unwrap().payload.to_vec());
            }
            out
        })
    }

    fn config(&self) -> stream::Config {
        self.rt.block_on(async {
            let mut stream = self.js.get_stream(STREAM).await.unwrap();
            stream.info().await.unwrap().config.clone()
        })
    }

    fn update(&self, change: impl FnOnce(&mut stream::Config)) {
        let mut config = self.config();
        change(&mut config);
        self.rt.block_on(self.js.update_stream(config)).unwrap();
    }

    fn delete(&self) {
        self.rt.block_on(self.js.delete_stream(STREAM)).unwrap();
    }

    fn create(&self, config: stream::Config) {
        self.rt.block_on(self.js.create_stream(config)).unwrap();
    }
}

/// Runs `keyledger [GLOBAL] serve --nats` for a new host from an empty directory; it must exit
/// with an error within 60 s (a host that starts is killed, and the test fails). Returns
/// what it printed on stderr.
fn refused_to_start(fleet: &Fleet, name: &str, global: &[&str]) -> String {
    let ck = fleet.chain_key.to_str().unwrap().to_owned();
    let mut child = keyledger(&fleet.dir.path().join(name))
        .args(["--chain-key-file", &ck])
        .args(global)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--nats", &fleet.url(), "--host-id", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("host {name} started on the stream");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    stderr
}

/// `/v1/fleet` on host `i`.
fn status(fleet: &Fleet, i: usize) -> Value {
    fleet.call(i, "GET", "/v1/fleet", None).json()
}

/// Waits until host `i` has skipped `n` messages that are not the fleet's; returns its
/// `/v1/fleet`.
fn skipped(fleet: &Fleet, i: usize, n: u64) -> Value {
    let mut last = Value::Null;
    eventually(20, &format!("host {i} skips {n} foreign messages"), || {
        last = status(fleet, i);
        last["foreign_messages"].as_u64() == Some(n)
    });
    last
}

/// Adds a host from an empty directory and starts it.
fn add_host(fleet: &mut Fleet, name: &str) -> usize {
    fleet.hosts.push(Host {
        name: name.to_owned(),
        db: fleet.dir.path().join(name),
        served: None,
        extra: fleet.hosts[0].extra.clone(),
    });
    let i = fleet.hosts.len() - 1;
    fleet.start_host(i);
    i
}

/// Revokes key `id` through host `i`: the answer says every live host confirmed it.
fn revoke(fleet: &Fleet, i: usize, id: &str) {
    let answer = fleet.call(i, "DELETE", &format!("/v1/keys/{id}"), None);
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = answer.json();
    assert!(
        body.get("unconfirmed").is_none(),
        "every live host confirmed: {body}"
    );
}

/// Waits until host `i`'s health is 503 for `reason`; returns `/healthz`.
fn unhealthy(fleet: &Fleet, i: usize, reason: &str) -> Value {
    let mut last = Value::Null;
    eventually(20, &format!("host {i} reports {reason}"), || {
        let h = fleet.health(i);
        last = h.json();
        h.status == 503 && last["reason"] == reason
    });
    last
}

/// A create through host `i` is refused with 503 `stream_changed`.
fn writes_refused(fleet: &Fleet, i: usize) {
    let answer = fleet.call(
        i,
        "POST",
        "/v1/keys",
        Some(json!({"name": "refused", "roles": ["bot"]})),
    );
    assert_eq!(
        (answer.status, answer.json()["error"].as_str()),
        (503, Some("stream_changed")),
        "{answer:?}"
    );
}

/// The attack that used to halt the whole fleet: one byte on the log's subject. Every host
/// skips it the same way, counts it and stays healthy; a revocation after it is
/// confirmed; a restarted host and a new one start and converge; the logs stay identical.
#[test]
fn a_single_byte_on_the_log_subject_halts_no_host_and_is_skipped_and_counted() {
    let mut fleet = Fleet::start(&["a", "b"], &[]);
    let (id, secret) = fleet.create(0, "victim");
    fleet.converged(2);
    let attacker = Client::new(&fleet.url());
    let at = attacker.publish(b"x".to_vec());
    for i in 0..2 {
        let status = skipped(&fleet, i, 1);
        let why = status["last_foreign"].as_str().unwrap();
        assert!(
            why.contains(&format!("stream message {at}")) && why.contains("not sealed"),
            "{why}"
        );
        assert_eq!(fleet.health(i).status, 200, "{}", fleet.health(i).body);
        let served = fleet.hosts[i].served.as_ref().unwrap();
        eventually(10, "the host logs it", || {
            served
                .errors()
                .contains("keyledger::fleet: skipped 1 stream message(s) that are not the fleet's")
        });
    }
    revoke(&fleet, 1, &id);
    for i in 0..2 {
        eventually(10, "the revoked key is rejected", || {
            fleet.auth(i, &secret) == 401
        });
    }
    // A host started after the junk, on its own log (whose last position is junk too), and
    // one from an empty directory.
    attacker.publish(b"x".to_vec());
    skipped(&fleet, 1, 2);
    let mut b = fleet.hosts[1].served.take().unwrap();
    assert!(b.terminate().is_some_and(|s| s.success()));
    fleet.start_host(1);
    let c = add_host(&mut fleet, "c");
    fleet.converged(3);
    for i in [1, c] {
        assert_eq!(fleet.health(i).status, 200);
        assert_eq!(fleet.auth(i, &secret), 401);
    }
    assert_eq!(skipped(&fleet, c, 2)["foreign_messages"], 2);
    // Writers race past it: another byte, then writes from every host.
    attacker.publish(b"x".to_vec());
    for i in [0, 1, c] {
        fleet.create(i, &format!("after-{i}"));
    }
    fleet.converged(6);
    fleet.stop_and_compare();
}

/// A genuine message (sealed with the chain key) published again at another position is
/// not applied twice: its seal binds it to its place, so every host skips it.
#[test]
fn a_genuine_message_replayed_at_another_position_is_skipped_not_applied() {
    let mut fleet = Fleet::start(&["a", "b"], &[]);
    let (id, _) = fleet.create(0, "victim");
    revoke(&fleet, 0, &id);
    fleet.converged(3);
    let attacker = Client::new(&fleet.url());
    let messages = attacker.messages();
    // The create's batch, and the genesis, each replayed after the delete.
    let create = messages.len() - 2;
    attacker.publish(messages[create].clone());
    attacker.publish(messages[0].clone());
    for i in 0..2 {
        let status = skipped(&fleet, i, 2);
        assert!(
            status["last_foreign"]
                .as_str()
                .unwrap()
                .contains("sealed for position 1"),
            "{status}"
        );
        assert_eq!(fleet.last_seq(i), 3, "nothing applied");
        assert_eq!(fleet.health(i).status, 200);
    }
    fleet.create(1, "after");
    fleet.converged(4);
    let audit = fleet.stop_and_compare();
    assert_eq!(audit.len(), 4);
}

/// Rollback by replay: with the rights to manage the stream, the attacker deletes it,
/// creates it again with the same settings and puts back the genuine messages from before
/// a delete. Running hosts notice at once: unhealthy, writes refused with a typed error,
/// the deleted key still rejected, the others still verified until the staleness limit,
/// then rejected. A new host does not start on the replayed stream.
#[test]
fn a_stream_deleted_and_replayed_from_genuine_messages_is_refused_by_every_host() {
    let fleet = Fleet::start(&["a", "b"], &["--stale-serve", "2s", "--stale-reject", "6s"]);
    let (_, kept) = fleet.create(0, "kept");
    let (id, deleted) = fleet.create(1, "victim");
    let before_delete = Client::new(&fleet.url()).messages();
    revoke(&fleet, 0, &id);
    fleet.converged(4);

    let attacker = Client::new(&fleet.url());
    let config = attacker.config();
    attacker.delete();
    attacker.create(config);
    for message in &before_delete {
        attacker.publish(message.clone());
    }
    let noticed = Instant::now();
    for i in 0..2 {
        unhealthy(&fleet, i, "stream");
        // A heartbeat between the delete and the create sees the stream deleted first;
        // the next one, replaced.
        let mut fault = String::new();
        eventually(10, "the host sees the stream replaced", || {
            fault = fleet.health(i).json()["fleet"]["stream_fault"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            fault.contains("replaced")
        });
        writes_refused(&fleet, i);
        let served = fleet.hosts[i].served.as_ref().unwrap();
        eventually(10, "the host logs it", || {
            served
                .errors()
                .contains("keyledger::fleet: the stream cannot be trusted: the stream was replaced")
        });
        assert_eq!(fleet.auth(i, &deleted), 401, "the delete stands");
        assert_eq!(fleet.auth(i, &kept), 200, "still verifying");
        assert_eq!(fleet.last_seq(i), 4);
    }
    assert!(
        noticed.elapsed() < Duration::from_secs(5),
        "{:?}",
        noticed.elapsed()
    );
    // The stream brings no revocation any more: past the staleness limit, every key is
    // rejected.
    eventually(30, "keys are rejected once stale", || fleet.auth(0, &kept) == 403);

    // A new host cannot be fooled into serving the deleted key: it does not start.
    let stderr = refused_to_start(&fleet, "new", &[]);
    assert!(stderr.contains("replaced"), "{stderr}");
}

/// Settings changed under the fleet by a client that may edit the stream: limits that
/// would discard messages, another subject, the stream deleted (deny-delete cannot be
/// turned off: the server refuses). Each is noticed
/// within moments, reported (`/healthz` 503 `stream` with the reason) and stops writes;
/// keys still verify; settings put back, the hosts recover and take writes.
#[test]
fn stream_settings_changed_under_the_fleet_are_noticed_reported_and_recovered_from() {
    let mut fleet = Fleet::start(&["a", "b"], &[]);
    let (_, secret) = fleet.create(0, "kept");
    fleet.converged(2);
    let attacker = Client::new(&fleet.url());

    // The server itself refuses to turn deny-delete or deny-purge off on a stream
    // (nats-server 2.15: "can not cancel deny message deletes"): only deleting the stream
    // and creating it again does, which is a replaced stream.
    for off in [(|c: &mut stream::Config| c.deny_delete = false) as Change, |c| {
        c.deny_purge = false
    }] {
        let mut config = attacker.config();
        off(&mut config);
        assert!(attacker.rt.block_on(attacker.js.update_stream(config)).is_err());
    }
    let changes: [(&str, Change, Change); 3] = [
        ("limits", |c| c.max_messages = 1000, |c| c.max_messages = -1),
        (
            "limits",
            |c| c.max_age = Duration::from_secs(3600),
            |c| c.max_age = Duration::ZERO,
        ),
        (
            "other subjects",
            |c| c.subjects.push("elsewhere.>".into()),
            |c| c.subjects.retain(|s| s == SUBJECT),
        ),
    ];
    let mut seq = 2;
    for (what, change, restore) in changes {
        attacker.update(change);
        for i in 0..2 {
            let health = unhealthy(&fleet, i, "stream");
            let fault = health["fleet"]["stream_fault"].as_str().unwrap();
            assert!(fault.contains(what), "{what}: {fault}");
            writes_refused(&fleet, i);
            assert_eq!(fleet.auth(i, &secret), 200);
        }
        let survey = hosts::cli(
            &fleet.dir.path().join("survey"),
            &[
                "--chain-key-file",
                fleet.chain_key.to_str().unwrap(),
                "fleet",
                "--nats",
                &fleet.url(),
            ],
        );
        let survey = String::from_utf8(survey.stdout).unwrap();
        assert!(
            survey.contains("cannot be trusted") && survey.contains(what),
            "{survey}"
        );
        attacker.update(restore);
        for i in 0..2 {
            eventually(20, &format!("{what}: host {i} recovers"), || {
                fleet.health(i).status == 200
            });
        }
        fleet.create(1, &format!("after {what}"));
        seq += 1;
        fleet.converged(seq);
    }

    attacker.delete();
    for i in 0..2 {
        let health = unhealthy(&fleet, i, "stream");
        assert!(
            health["fleet"]["stream_fault"]
                .as_str()
                .unwrap()
                .contains("deleted"),
            "{health}"
        );
        writes_refused(&fleet, i);
        assert_eq!(fleet.auth(i, &secret), 200);
    }
    fleet.stop_and_compare();
}

/// A stream rolled back with its creation time intact (a restored backup of it) cannot be
/// told from the stream alone; a witness can: a new host given the fleet's head
/// (`--expect-head SEQ:HASH`) checks it once it has caught up, and refuses a stream that
/// does not reach it, while one that does starts.
#[test]
fn a_new_host_with_a_witness_refuses_a_stream_that_does_not_reach_it() {
    let mut fleet = Fleet::start(&["a"], &[]);
    fleet.create(0, "one");
    let mut a = fleet.hosts[0].served.take().unwrap();
    assert!(a.terminate().is_some_and(|s| s.success()));
    let ck = fleet.chain_key.to_str().unwrap().to_owned();
    let head = hosts::cli(&fleet.hosts[0].db, &["--chain-key-file", &ck, "head"]);
    let head = String::from_utf8(head.stdout).unwrap();
    let head = head
        .lines()
        .find_map(|l| l.strip_prefix("head"))
        .unwrap()
        .trim()
        .to_owned();
    let (seq, hash) = head.split_once(':').unwrap();
    assert_eq!(seq, "2", "{head}");
    fleet.start_host(0);

    let past = format!("3:{hash}");
    let stderr = refused_to_start(&fleet, "behind", &["--expect-head", &past]);
    assert!(stderr.contains("ends at record 2"), "{stderr}");

    fleet.hosts.push(Host {
        name: "witnessed".into(),
        db: fleet.dir.path().join("witnessed"),
        served: None,
        extra: vec!["--expect-head".into(), head],
    });
    fleet.start_host(1);
    fleet.converged(2);
    fleet.stop_and_compare();
}

/// The nats-server configuration the README gives (its `conf` block), written to `dir`.
/// The password of the README's host user.
const HOST: &str = "host-secret-1";
/// The password of the README's operator user.
const ADMIN: &str = "admin-secret-2";

/// Hosts a and b on a nats-server with the README's configuration as `change` leaves it,
/// as its host user; the file that holds the password, which hosts started later read.
fn on_readme_permissions(change: impl Fn(&str) -> String) -> (Fleet, tempfile::NamedTempFile) {
    let password = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(password.path(), HOST).unwrap();
    let user = [
        "--nats-user",
        "keyledger-host",
        "--nats-password-file",
        password.path().to_str().unwrap(),
    ];
    let fleet = Fleet::start_on(&["a", "b"], &user, |dir| {
        let config = readme_config_changed(dir, change);
        nats::NatsServer::start_with(dir, Some((config, readme_env())))
    });
    (fleet, password)
}

/// The passwords the README's configuration reads from the environment.
fn readme_env() -> Vec<(String, String)> {
    vec![
        ("KEYLEDGER_HOST_PASSWORD".to_owned(), HOST.to_owned()),
        ("KEYLEDGER_ADMIN_PASSWORD".to_owned(), ADMIN.to_owned()),
        ("OTHERS_PASSWORD".to_owned(), "other-secret-3".to_owned()),
    ]
}

/// The README's configuration as `change` leaves it, written to `dir`.
fn readme_config_changed(dir: &std::path::Path, change: impl Fn(&str) -> String) -> std::path::PathBuf {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let (_, rest) = readme.split_once("```conf\n").expect("README has a conf block");
    let (block, _) = rest.split_once("```").unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("nats-server.conf");
    std::fs::write(&path, change(block)).unwrap();
    path
}

/// Permissions from before writes were forwarded (0.5.0's README: no writes nor answers
/// subject): the hosts find out when they start and append their own writes, and no write
/// fails for it.
#[test]
fn permissions_without_forwarded_writes_cost_no_write() {
    let (fleet, _password) = on_readme_permissions(|block| {
        let old = block
            .lines()
            .filter(|l| {
                let l = l.trim();
                l != r#""keyledger.keyledger.write.>","# && l != r#""keyledger.keyledger.answer.>","#
            })
            .map(|l| {
                l.replace(r#", "keyledger.keyledger.write.>","#, "")
                    .replace(r#""keyledger.keyledger.answer.>"]"#, "]")
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!old.contains(".write") && !old.contains(".answer"), "{old}");
        old
    });
    eventually(30, "b hears a", || {
        status(&fleet, 1)["hosts"]
            .as_array()
            .is_some_and(|h| h.len() == 2)
    });
    for n in 0..5 {
        let started = std::time::Instant::now();
        let (_, secret) = fleet.create(1, &format!("bot {n}"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "no write waits for an answer"
        );
        assert_eq!(fleet.auth(1, &secret), 200);
    }
    assert_eq!(status(&fleet, 1)["writes"]["forwarded"], 0);
    assert_eq!(status(&fleet, 0)["writes"]["served"], 0);
    let logs =
        fleet.hosts[0].served.as_ref().unwrap().errors() + &fleet.hosts[1].served.as_ref().unwrap().errors();
    assert!(logs.contains("refuses this host's forwarded writes"), "{logs}");
}

/// Connects as `user` (a fresh runtime); `None` if the server refuses the connection.
fn connect_as(url: &str, user: &str, password: &str) -> Option<Client> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let js = rt.block_on(async {
        let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            .connect(url)
            .await
            .ok()?;
        // A refused request is never answered: do not wait long for it.
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(2))
            .build(client);
        Some(js)
    })?;
    Some(Client { rt, js })
}

/// The README's NATS permissions, on a real nats-server: hosts with the host user work
/// (writes, a confirmed revocation, a new host catching up), and that user cannot delete,
/// purge or edit the stream; a user of another account sees nothing of it and cannot
/// reach it; the operator's user can manage it.
#[test]
fn the_readme_nats_permissions_let_hosts_work_and_nothing_else() {
    let (mut fleet, _password) = on_readme_permissions(str::to_owned);
    // b forwards its writes to a, on the writes subject, answered on b's answers subject.
    eventually(30, "b forwards to a", || {
        status(&fleet, 1)["writes"]["writer"] == "a"
    });
    let (id, secret) = fleet.create(1, "bot");
    assert_eq!(status(&fleet, 1)["writes"]["forwarded"], 1);
    fleet.converged(2);
    revoke(&fleet, 0, &id);
    for i in 0..2 {
        eventually(10, "the revoked key is rejected", || {
            fleet.auth(i, &secret) == 401
        });
        assert_eq!(fleet.health(i).status, 200, "{}", fleet.health(i).body);
    }
    let c = add_host(&mut fleet, "c");
    fleet.converged(3);
    assert_eq!(fleet.health(c).status, 200);
    // Usage reports pass too: rate limits and credits are shared, not split per host.
    for i in [0, 1, c] {
        eventually(10, "usage is shared", || {
            fleet.health(i).body.contains(r#""usage_sharing":"live""#)
        });
    }

    let url = fleet.url();
    let host = connect_as(&url, "keyledger-host", HOST).unwrap();
    let before = host.messages().len();
    let rt = &host.rt;
    assert!(rt.block_on(host.js.delete_stream(STREAM)).is_err(), "delete");
    let stream = rt.block_on(host.js.get_stream(STREAM)).unwrap();
    assert!(rt.block_on(stream.purge().into_future()).is_err(), "purge");
    assert!(rt.block_on(stream.delete_message(1)).is_err(), "delete a message");
    let mut config = host.config();
    config.max_messages = 10;
    assert!(rt.block_on(host.js.update_stream(config)).is_err(), "edit");
    assert!(
        rt.block_on(host.js.delete_key_value("keyledger-hosts")).is_err(),
        "delete the bucket"
    );
    assert_eq!(host.messages().len(), before);

    let other = connect_as(&url, "someone", "other-secret-3").unwrap();
    assert!(
        other.rt.block_on(other.js.get_stream(STREAM)).is_err(),
        "another account sees no stream"
    );
    other
        .rt
        .block_on(async { other.js.publish(SUBJECT, "x".into()).await?.await })
        .expect_err("another account's publish reaches no stream");
    assert!(connect_as(&url, "keyledger-host", "wrong").is_none());
    assert_eq!(host.messages().len(), before);

    let admin = connect_as(&url, "keyledger-admin", ADMIN).unwrap();
    assert_eq!(admin.messages().len(), before, "the operator reads the stream");
    for i in [0, 1, c] {
        assert_eq!(fleet.health(i).status, 200);
        assert_eq!(status(&fleet, i)["foreign_messages"], 0);
    }
    // The hosts never needed more than they were given (the attempts above are this
    // test's own connections, which carry no name).
    no_host_denied(&fleet.dir.path().join("nats"));
    fleet.stop_and_compare();
}

/// Asserts that the nats-server whose directory is `nats` refused no host anything: its
/// log names no permissions violation by a connection named `keyledger <host>`.
fn no_host_denied(nats: &std::path::Path) {
    let log = std::fs::read_to_string(nats.join("nats.log")).unwrap();
    let denied: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Violation") && l.contains(":keyledger "))
        .collect();
    assert!(denied.is_empty(), "{denied:#?}");
}

/// The snapshot bucket of the default stream.
const SNAPSHOTS: &str = "keyledger-snapshots";

/// What the operator's user sees of the snapshot bucket: the record the published
/// snapshot stands at, its chunks, and how many messages the bucket's stream holds.
fn published(admin: &Client) -> Option<(u64, usize, u64)> {
    admin.rt.block_on(async {
        let bucket = admin.js.get_object_store(SNAPSHOTS).await.ok()?;
        let info = bucket.info("snapshot").await.ok()?;
        let seq = info.metadata.get("seq")?.parse().ok()?;
        let mut stream = admin.js.get_stream(format!("OBJ_{SNAPSHOTS}")).await.ok()?;
        let messages = stream.info().await.ok()?.state.messages;
        Some((seq, info.chunks, messages))
    })
}

/// Library hosts on the README's permissions that save a snapshot every few records: the
/// first makes the snapshot bucket and publishes each snapshot there (replacing the one
/// before, whose chunks it purges); a new host from an empty directory joins from the
/// published snapshot and proves the history under it. The host user still cannot purge
/// the stream nor the heads bucket, and the server refused the hosts nothing.
#[test]
fn on_the_readme_nats_permissions_hosts_publish_snapshots_and_a_new_host_joins_from_one() {
    let dir = tempfile::tempdir().unwrap();
    let nats_dir = dir.path().join("nats");
    let config = readme_config_changed(&nats_dir, str::to_owned);
    let server = nats::NatsServer::start_with(&nats_dir, Some((config, readme_env())));
    let url = server.url();
    let open = |name: &str| {
        KeyStore::builder()
            .chain_key(ChainKey::from_bytes([5; 32]))
            .snapshot_every(4)
            .fleet(
                FleetOptions::new(url.as_str())
                    .host_id(name)
                    .user_password("keyledger-host", HOST)
                    .heartbeat(Duration::from_millis(100))
                    .lease(Duration::from_secs(2)),
            )
            .open(dir.path().join(name))
            .unwrap_or_else(|e| panic!("host {name}: {e}"))
    };
    let root = Actor::super_admin("root");
    let create = |store: &KeyStore, name: &str| {
        store
            .create_key(&root, NewKey::new(name).role("bot"))
            .unwrap()
            .key
            .expose_secret()
            .to_owned()
    };
    let a = open("a");
    let admin = connect_as(&url, "keyledger-admin", ADMIN).unwrap();
    for n in 0..5 {
        create(&a, &format!("before {n}"));
    }
    let mut first = 0;
    eventually(30, "a publishes a snapshot", || {
        first = published(&admin).map_or(0, |(seq, _, _)| seq);
        first > 0
    });
    // Another snapshot replaces it: the old object's chunks are purged, so the bucket's
    // stream holds the new object's chunks and its one metadata message.
    for n in 0..5 {
        create(&a, &format!("after {n}"));
    }
    eventually(30, "a publishes a newer snapshot, the old chunks purged", || {
        published(&admin).is_some_and(|(seq, chunks, messages)| seq > first && messages == chunks as u64 + 1)
    });
    let tail = create(&a, "tail");

    let c = open("c");
    assert!(c.opened_from_snapshot(), "c joined from the published snapshot");
    assert_eq!(c.last_seq(), a.last_seq());
    assert!(c.verify(&tail, "10.1.2.3".parse().unwrap()).is_ok());
    eventually(60, "c fetches and proves the history under its snapshot", || {
        c.integrity() == Integrity::Verified
    });

    // The purge the snapshot bucket needs opens no other purge (the server refuses it,
    // as its log says: `keyledger` also refuses purges itself), and the host user still
    // cannot remove the bucket.
    let host = connect_as(&url, "keyledger-host", HOST).unwrap();
    for stream in [STREAM, "KV_keyledger-hosts"] {
        let stream = host.rt.block_on(host.js.get_stream(stream)).unwrap();
        assert!(host.rt.block_on(stream.purge().into_future()).is_err());
    }
    assert!(host.rt.block_on(host.js.delete_object_store(SNAPSHOTS)).is_err());
    assert!(published(&admin).is_some());
    let log = std::fs::read_to_string(nats_dir.join("nats.log")).unwrap();
    for stream in [STREAM, "KV_keyledger-hosts"] {
        let refused = format!("Publish Violation - Subject \"$JS.API.STREAM.PURGE.{stream}\"");
        assert!(
            log.contains(&refused),
            "the server refuses the purge of {stream}: {log}"
        );
    }
    drop(c);
    drop(a);
    no_host_denied(&nats_dir);
}
