//! A fleet of `keyledger serve --nats` hosts on one real nats-server, for every test that
//! runs one (`tests/fleet.rs`, `fleet_stream.rs`, `fleet_lease.rs`): each host a process
//! with its own store, started and stopped by the test, optionally connected through a
//! [`Relay`] the test can cut, and the HTTP calls the tests make to them. After a scenario,
//! `stop_and_compare` checks every host's store and compares their exports byte for byte.
//! Needs `nats.rs`, `served.rs` and `relay.rs` beside it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::nats::NatsServer;
use crate::relay::Relay;
use crate::served::{Served, keyledger, super_admin_key};

/// Timings short enough for tests: hosts hear each other every 100 ms and drop out after
/// a second of silence.
pub(crate) const FAST: &[&str] = &["--heartbeat", "100ms", "--lease", "1s"];

/// Runs the command line on `db`; panics unless it exits 0.
pub(crate) fn cli(db: &Path, args: &[&str]) -> Output {
    let out = keyledger(db).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "keyledger {args:?}: {out:?}");
    out
}

/// An HTTP answer: status and body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// One HTTP/1.1 request on a connection of its own; `None` if the server cannot be reached.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> Option<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.set_nodelay(true).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: fleet.test\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(key) = key {
        request.push_str(&format!("x-api-key: {key}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("content-type: application/json\r\n");
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Some(Answer { status, body })
}

pub(crate) fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size + 2 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// An admin API call with the root key; panics if the server does not answer.
pub(crate) fn admin(addr: SocketAddr, root: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
    http(addr, method, path, Some(root), body.as_ref())
        .unwrap_or_else(|| panic!("{addr} did not answer {method} {path}"))
}

/// A key named `name` with role `bot`, created with the admin key `root` through the host
/// at `addr`: its id and secret.
pub(crate) fn create_key(addr: SocketAddr, root: &str, name: &str) -> (String, String) {
    let answer = admin(
        addr,
        root,
        "POST",
        "/v1/keys",
        Some(json!({"name": name, "roles": ["bot"]})),
    );
    assert_eq!(answer.status, 201, "{answer:?}");
    let key = answer.json();
    (
        key["id"].as_str().unwrap().to_owned(),
        key["key"].as_str().unwrap().to_owned(),
    )
}

/// Polls `f` until it holds, for at most `secs` seconds.
pub(crate) fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One host: its store's directory and, while it runs, its server.
pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) db: PathBuf,
    pub(crate) served: Option<Served>,
    pub(crate) extra: Vec<String>,
}

/// A fleet on one nats-server: the chain key all hosts share, the root admin key made on
/// the first host before it joined, the hosts, the flags every host gets before its own,
/// and each host's relay, if it has one (by host index).
pub(crate) struct Fleet {
    pub(crate) dir: TempDir,
    pub(crate) nats: std::sync::Mutex<NatsServer>,
    pub(crate) chain_key: PathBuf,
    pub(crate) root: String,
    pub(crate) hosts: Vec<Host>,
    pub(crate) common: &'static [&'static str],
    pub(crate) relays: Vec<Option<Relay>>,
}

impl Fleet {
    /// `names.len()` hosts: the first bootstraps the stream with its store (one super-admin
    /// key), the others start from empty directories; returns once all have caught up.
    pub(crate) fn start(names: &[&str], extra: &[&str]) -> Fleet {
        Self::start_on(names, extra, NatsServer::start)
    }

    /// As [`Fleet::start`], on the nats-server `nats` starts in the directory given.
    pub(crate) fn start_on(names: &[&str], extra: &[&str], nats: impl FnOnce(&Path) -> NatsServer) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let nats = nats(&dir.path().join("nats"));
        let chain_key = dir.path().join("chain.key");
        cli(
            &dir.path().join("unused"),
            &["chain-key", "new", chain_key.to_str().unwrap()],
        );
        let root = super_admin_key(&dir.path().join(names[0]), &chain_key, "root-admin", &[]);
        let mut fleet = Fleet {
            nats: std::sync::Mutex::new(nats),
            chain_key,
            root,
            hosts: names
                .iter()
                .map(|n| Host {
                    name: (*n).to_owned(),
                    db: dir.path().join(n),
                    served: None,
                    extra: extra.iter().map(|s| (*s).to_owned()).collect(),
                })
                .collect(),
            dir,
            common: FAST,
            relays: Vec::new(),
        };
        for i in 0..names.len() {
            fleet.start_host(i);
        }
        fleet.converged(1);
        fleet
    }

    /// One host per `(name, flags, relayed)`, with only its own flags (no [`FAST`]): the
    /// first bootstraps the stream with its store (one super-admin key); returns once every
    /// host verifies keys.
    pub(crate) fn start_each(hosts: &[(&str, &[&str], bool)]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsServer::start(&dir.path().join("nats"));
        let chain_key = dir.path().join("chain.key");
        let out = keyledger(&dir.path().join("unused"))
            .args(["chain-key", "new", chain_key.to_str().unwrap()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let root = super_admin_key(&dir.path().join(hosts[0].0), &chain_key, "root-admin", &[]);
        let server: SocketAddr = ([127, 0, 0, 1], nats.port).into();
        let mut fleet = Fleet {
            hosts: hosts
                .iter()
                .map(|(name, extra, _)| Host {
                    name: (*name).to_owned(),
                    db: dir.path().join(name),
                    served: None,
                    extra: extra.iter().map(|s| (*s).to_owned()).collect(),
                })
                .collect(),
            relays: hosts
                .iter()
                .map(|(_, _, relayed)| relayed.then(|| Relay::start(server)))
                .collect(),
            common: &[],
            dir,
            nats: std::sync::Mutex::new(nats),
            chain_key,
            root,
        };
        for i in 0..hosts.len() {
            fleet.start_host(i);
        }
        for i in 0..hosts.len() {
            eventually(60, "every host verifies keys", || {
                fleet.auth(i, &fleet.root.clone()) == 200
            });
        }
        fleet
    }

    pub(crate) fn args(&self, i: usize) -> Vec<String> {
        let host = &self.hosts[i];
        let url = self
            .relays
            .get(i)
            .and_then(Option::as_ref)
            .map_or_else(|| self.url(), Relay::url);
        let mut args = vec![
            "--chain-key-file".to_owned(),
            self.chain_key.to_str().unwrap().to_owned(),
            "--nats".to_owned(),
            url,
            "--host-id".to_owned(),
            host.name.clone(),
        ];
        args.extend(self.common.iter().map(|s| (*s).to_owned()));
        args.extend(host.extra.iter().cloned());
        args
    }

    pub(crate) fn url(&self) -> String {
        self.nats.lock().unwrap().url()
    }

    pub(crate) fn start_host(&mut self, i: usize) {
        let args = self.args(i);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.hosts[i].served = Some(Served::start(&self.hosts[i].db, &args));
    }

    pub(crate) fn addr(&self, i: usize) -> SocketAddr {
        self.hosts[i].served.as_ref().unwrap().addr
    }

    pub(crate) fn relay(&self, i: usize) -> &Relay {
        self.relays[i].as_ref().unwrap()
    }

    pub(crate) fn call(&self, i: usize, method: &str, path: &str, body: Option<Value>) -> Answer {
        admin(self.addr(i), &self.root, method, path, body)
    }

    /// A key created through host `i`: its id and secret.
    pub(crate) fn create(&self, i: usize, name: &str) -> (String, String) {
        create_key(self.addr(i), &self.root, name)
    }

    /// `/auth`'s status for `secret` on host `i` (0: no answer).
    pub(crate) fn auth(&self, i: usize, secret: &str) -> u16 {
        http(self.addr(i), "GET", "/auth", Some(secret), None).map_or(0, |a| a.status)
    }

    pub(crate) fn health(&self, i: usize) -> Answer {
        http(self.addr(i), "GET", "/healthz", None, None).unwrap()
    }

    /// Waits until every running host has applied `seq` records.
    pub(crate) fn converged(&self, seq: u64) {
        for (i, host) in self.hosts.iter().enumerate() {
            if host.served.is_none() {
                continue;
            }
            eventually(60, &format!("host {} reaches record {seq}", host.name), || {
                self.health(i).json()["last_seq"].as_u64() == Some(seq)
            });
        }
    }

    /// What host `i` says of its fleet (`/v1/fleet`), once it verifies admin keys.
    pub(crate) fn fleet_status(&self, i: usize) -> Value {
        self.call(i, "GET", "/v1/fleet", None).json()
    }

    /// Stops host `i` (SIGTERM) and returns what it printed on standard error.
    pub(crate) fn stop(&mut self, i: usize) -> String {
        let mut served = self.hosts[i].served.take().unwrap();
        assert!(served.terminate().is_some(), "{}", served.errors());
        served.errors()
    }

    pub(crate) fn last_seq(&self, i: usize) -> u64 {
        self.health(i).json()["last_seq"].as_u64().unwrap()
    }

    /// Stops every host, checks each store and exports it: the exports are the same bytes.
    pub(crate) fn stop_and_compare(&mut self) -> Vec<Value> {
        stop_and_compare(self.dir.path(), &self.chain_key, &mut self.hosts)
    }
}

/// Stops every host, checks each store (`keyledger check`) and exports it: the exports are
/// the same bytes, and the audit trail has no gap nor duplicate. Returns the audit trail.
pub(crate) fn stop_and_compare(dir: &Path, chain_key: &Path, hosts: &mut [Host]) -> Vec<Value> {
    for host in hosts.iter_mut() {
        if let Some(mut served) = host.served.take() {
            assert!(
                served.terminate().is_some_and(|s| s.success()),
                "{}",
                served.errors()
            );
        }
    }
    let ck = chain_key.to_str().unwrap().to_owned();
    let mut exports = Vec::new();
    let mut audits = Vec::new();
    for host in hosts.iter() {
        let check = cli(&host.db, &["--chain-key-file", &ck, "check"]);
        assert!(
            String::from_utf8_lossy(&check.stdout).starts_with("intact:"),
            "{}: {check:?}",
            host.name
        );
        let file = dir.join(format!("{}.export", host.name));
        cli(
            &host.db,
            &["--chain-key-file", &ck, "export", file.to_str().unwrap()],
        );
        exports.push(std::fs::read(&file).unwrap());
        let audit = cli(&host.db, &["--chain-key-file", &ck, "audit", "--json"]);
        audits.push(
            String::from_utf8(audit.stdout)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>(),
        );
    }
    for (host, export) in hosts.iter().zip(&exports).skip(1) {
        assert!(
            export == &exports[0],
            "{}'s export differs from {}'s",
            host.name,
            hosts[0].name
        );
    }
    let audit = audits.swap_remove(0);
    for (seq, entry) in audit.iter().enumerate() {
        assert_eq!(
            entry["seq"].as_u64(),
            Some(seq as u64 + 1),
            "no gap, no duplicate"
        );
    }
    audit
}
