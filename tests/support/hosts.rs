//! A fleet of `keyledger serve --nats` hosts on one real nats-server, each a process with
//! its own store, optionally connected through a [`Relay`] the test can cut: the harness
//! of `tests/fleet_lease.rs`. Needs `nats.rs`, `served.rs` and `relay.rs` beside it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use super::nats::NatsServer;
use super::relay::Relay;
use super::served::{Served, keyledger, super_admin_key};

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

fn dechunk(mut rest: &str) -> String {
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

/// Polls `f` until it holds, for at most `secs` seconds.
pub(crate) fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One host: its store's directory, its flags, its relay if it has one, and, while it
/// runs, its server.
pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) db: PathBuf,
    pub(crate) served: Option<Served>,
    pub(crate) extra: Vec<String>,
    pub(crate) relay: Option<Relay>,
}

/// A fleet on one nats-server: the chain key all hosts share, the root admin key made on
/// the first host before it joined, and the hosts.
pub(crate) struct Hosts {
    pub(crate) dir: TempDir,
    pub(crate) nats: NatsServer,
    pub(crate) chain_key: PathBuf,
    pub(crate) root: String,
    pub(crate) hosts: Vec<Host>,
}

impl Hosts {
    /// One host per `(name, flags, relayed)`: the first bootstraps the stream with its
    /// store (one super-admin key); returns once all have caught up.
    pub(crate) fn start(hosts: &[(&str, &[&str], bool)]) -> Hosts {
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
        let mut fleet = Hosts {
            hosts: hosts
                .iter()
                .map(|(name, extra, relayed)| Host {
                    name: (*name).to_owned(),
                    db: dir.path().join(name),
                    served: None,
                    extra: extra.iter().map(|s| (*s).to_owned()).collect(),
                    relay: relayed.then(|| Relay::start(server)),
                })
                .collect(),
            dir,
            nats,
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

    pub(crate) fn url(&self) -> String {
        self.nats.url()
    }

    pub(crate) fn start_host(&mut self, i: usize) {
        let host = &self.hosts[i];
        let url = host.relay.as_ref().map_or_else(|| self.url(), Relay::url);
        let mut args = vec![
            "--chain-key-file".to_owned(),
            self.chain_key.to_str().unwrap().to_owned(),
            "--nats".to_owned(),
            url,
            "--host-id".to_owned(),
            host.name.clone(),
        ];
        args.extend(host.extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.hosts[i].served = Some(Served::start(&self.hosts[i].db, &args));
    }

    pub(crate) fn addr(&self, i: usize) -> SocketAddr {
        self.hosts[i].served.as_ref().unwrap().addr
    }

    pub(crate) fn relay(&self, i: usize) -> &Relay {
        self.hosts[i].relay.as_ref().unwrap()
    }

    pub(crate) fn call(&self, i: usize, method: &str, path: &str, body: Option<Value>) -> Answer {
        http(self.addr(i), method, path, Some(&self.root), body.as_ref())
            .unwrap_or_else(|| panic!("host {i} did not answer {method} {path}"))
    }

    /// A key created through host `i`: its id and secret.
    pub(crate) fn create(&self, i: usize, name: &str) -> (String, String) {
        let answer = self.call(
            i,
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
            if host.served.is_some() {
                eventually(60, &format!("host {} reaches record {seq}", host.name), || {
                    self.health(i).json()["last_seq"].as_u64() == Some(seq)
                });
            }
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
}
