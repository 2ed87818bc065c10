//! keyledger's fleet mode (feature `nats`) measured end to end on loopback: one nats-server
//! with JetStream (its own temp dir) and three `keyledger serve --nats` processes A, B and
//! C, each on a store of its own, driven over HTTP by clients written here on hyper.
//!
//! - `propagation_p99_ms`: A (`--confirm-timeout 0s`, so its answer does not wait for the
//!   others) deletes a key while a thread polls B's `/auth` with it on a keep-alive
//!   connection; the time from A's answer to B's first 401, clamped at 0 (how often B
//!   rejected before A answered is counted). Target: p99 ≤ 10 ms.
//! - `confirmed_revocation_p99_ms`: a delete through C (the default 15 s confirmation wait):
//!   request to answer; every answer's `unconfirmed` must be empty, and the key must then
//!   be rejected on A and B at once (both are counted). Target: p99 ≤ 50 ms.
//! - `fleet_create32_vs_single`: 32 callers (keep-alive connections, tokio tasks) `POST
//!   /v1/keys` for a fixed time spread over A, B and C, against the same over one
//!   `keyledger serve` without `--nats` in the same run: creates/s, fleet over single.
//!   Target ≥ 0.8. Hosts forward their batches to the writer (A, the smallest id);
//!   `fleet_create_p99_worst_vs_best_host` is the worst host's p99 over the best's (target
//!   ≤ 2), and `fleet_create32_on_writer_vs_single` the same 32 callers all on A: the bound
//!   this machine sets, where three hosts and the server share two cores.
//! - `catchup_vs_replay`: in process, through the library: a store of 1M records (imported
//!   keys; 100k with `--quick`) reopened as a single host with snapshots off (a full
//!   replay), against a new host catching up from a stream that store bootstrapped, on an
//!   empty directory (`open` returns once caught up). Target: ≤ 2.
//! - `join_vs_replay`: then that store publishes a snapshot (saved as it closes) and a
//!   twentieth more records are appended (50k at 1M); a new host joining from the snapshot (serving once `open`
//!   returns; the history under the snapshot still fetched in the background, whose proof
//!   is reported as `history_verified_s`) against a new host replaying the whole stream,
//!   same stream. Target: ≤ 0.5.
//! - `propagation_p99_ms_r3`, `confirmed_revocation_p99_ms_r3`: then, with that server
//!   stopped, three nats-servers clustered on loopback with JetStream
//!   (`tests/support/cluster.rs`), and three new hosts A, B and C (new stores, a new chain
//!   key), each given all three servers' URLs in `--nats` and `--replicas 3` (the log and
//!   the heads bucket kept on every server): the same two measurements, the same targets
//!   (≤ 10 ms, ≤ 50 ms), and the fleet's creates as above (`fleet_create32_r3_vs_single`,
//!   no target). Each host connects to one of the servers, which need not lead the log's
//!   stream; which one leads it and the heads bucket is reported.
//!
//! `cargo bench --bench fleet` (`-- --quick` for a short run, under a minute; `--
//! --a-confirm-timeout D` to give A another `--confirm-timeout` than 0s (on R1 and R3),
//! `--catchup-records N` for another store size, `--no-r3` to leave out the cluster,
//! `--keep-dir` to keep the stores and the servers' logs). Needs
//! nats-server: `$NATS_SERVER`, else `target/tools/nats/bin/nats-server` (test.sh installs
//! it), else `PATH`. Prints a table (targets against measured; nothing is asserted) and
//! writes `target/bench/fleet.json`. Every process is stopped at the end, and on a panic.

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/cluster.rs"]
mod cluster;
mod common;
#[path = "../tests/support/nats.rs"]
mod nats;
#[path = "../tests/support/served.rs"]
mod served;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cluster::Cluster;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use keyledger::{Actor, ChainKey, ExistingKey, FleetOptions, KeyStore, NewKey};
use nats::NatsServer;
use serde_json::{Value, json};
use served::Served;
use tokio::runtime::Runtime;

/// Callers creating keys at once, in the fleet (spread over its hosts) and on one host.
const CREATE_CALLERS: usize = 32;
/// Keys imported by one `import_keys` call while the catch-up store is filled.
const IMPORT_CHUNK: usize = 5000;
/// How long one sample may wait for a key to verify, or to be rejected, on a host.
const PATIENCE: Duration = Duration::from_secs(10);
const TARGET_PROPAGATION_P99_MS: f64 = 10.0;
const TARGET_CONFIRMED_P99_MS: f64 = 50.0;
const TARGET_CATCHUP_VS_REPLAY: f64 = 2.0;
const TARGET_JOIN_VS_REPLAY: f64 = 0.5;

struct Mode {
    name: &'static str,
    propagation_samples: usize,
    confirm_samples: usize,
    create_warmup: Duration,
    create_time: Duration,
    catchup_records: usize,
    /// Replays and catch-ups each; the fastest counts.
    open_reps: usize,
    /// Host A's `--confirm-timeout`.
    a_confirm_timeout: String,
    /// Keep the temp dir (stores, nats-server's log, the hosts' standard error), also on a
    /// panic.
    keep_dir: bool,
    /// Measure on the three-server cluster too (off with `--no-r3`).
    r3: bool,
}

impl Mode {
    fn from_args() -> Mode {
        let args: Vec<String> = std::env::args().collect();
        let a_confirm_timeout = args
            .iter()
            .position(|a| a == "--a-confirm-timeout")
            .and_then(|i| args.get(i + 1))
            .map_or_else(|| "0s".to_owned(), String::clone);
        let keep_dir = args.iter().any(|a| a == "--keep-dir");
        let r3 = !args.iter().any(|a| a == "--no-r3");
        let catchup_records = args
            .iter()
            .position(|a| a == "--catchup-records")
            .and_then(|i| args.get(i + 1))
            .map(|n| {
                n.parse::<usize>()
                    .expect("--catchup-records takes a number")
                    .max(IMPORT_CHUNK)
            });
        if args.iter().any(|a| a == "--quick") {
            Mode {
                name: "quick",
                propagation_samples: 50,
                confirm_samples: 50,
                create_warmup: Duration::from_millis(300),
                create_time: Duration::from_secs(2),
                catchup_records: catchup_records.unwrap_or(100_000),
                open_reps: 1,
                a_confirm_timeout,
                keep_dir,
                r3,
            }
        } else {
            Mode {
                name: "full",
                propagation_samples: 200,
                confirm_samples: 200,
                create_warmup: Duration::from_secs(1),
                create_time: Duration::from_secs(5),
                catchup_records: catchup_records.unwrap_or(1_000_000),
                open_reps: 2,
                a_confirm_timeout,
                keep_dir,
                r3,
            }
        }
    }
}

fn main() {
    let mode = Mode::from_args();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    // Removed on drop, also on a panic, unless kept.
    let (_tmp, dir) = if mode.keep_dir {
        (None, tmp.keep())
    } else {
        let dir = tmp.path().to_path_buf();
        (Some(tmp), dir)
    };
    let dir = dir.as_path();
    eprintln!("fleet: {} mode, temp dir {}", mode.name, dir.display());
    let nats = NatsServer::start(&dir.join("nats"));
    let client = runtime("client", 1);

    let fleet = Fleet::start(dir, "R1", &nats.url(), 1, &mode.a_confirm_timeout);
    eprintln!(
        "  fleet of A, B, C up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let propagation = propagation(&mode, &client, &fleet);
    let confirmed = confirmed_revocation(&mode, &client, &fleet);
    let fleet_creates = creates(&mode, &client, &fleet.hosts(), &fleet.admin);
    // Every caller on the writer: what forwarding costs the others, and the bound this
    // machine sets (three hosts and the server share its cores).
    let writer_creates = creates(&mode, &client, &fleet.hosts()[..1], &fleet.admin);
    let chain_key_file = fleet.chain_key_file.clone();
    let host_errors = fleet.stop();

    let single = SingleHost::start(dir, &chain_key_file);
    let single_creates = creates(&mode, &client, &[("single", single.served.addr)], &single.admin);
    let single_errors = single.served.errors();
    drop(single);
    drop(client);

    let catchup = catchup(&mode, dir, &nats);
    let nats_version = nats_version();
    let nats_log: Vec<String> = nats
        .log()
        .lines()
        .filter(|l| ["[WRN]", "[ERR]", "Slow Consumer"].iter().any(|w| l.contains(w)))
        .map(str::to_owned)
        .collect();
    drop(nats);

    let (r3, r3_errors) = if mode.r3 {
        on_cluster(&mode, &dir.join("r3"))
    } else {
        (Value::Null, Vec::new())
    };

    let mut panics = BTreeMap::new();
    for (host, stderr) in host_errors
        .into_iter()
        .chain([("single".to_owned(), single_errors)])
        .chain(r3_errors.into_iter().map(|(h, e)| (format!("{h} (R3)"), e)))
    {
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("panicked")).collect();
        if !lines.is_empty() {
            eprintln!("warning: host {host} panicked: {}", lines.join(" | "));
            panics.insert(host, lines.join("\n"));
        }
    }

    let fleet_rate = fleet_creates["creates_per_s"].as_f64().unwrap();
    let single_rate = single_creates["creates_per_s"].as_f64().unwrap();
    let ratios = json!({
        "propagation_p99_ms": propagation["p99_ms"],
        "confirmed_revocation_p99_ms": confirmed["p99_ms"],
        "fleet_create32_vs_single": fleet_rate / single_rate,
        "fleet_create32_on_writer_vs_single": writer_creates["creates_per_s"].as_f64().unwrap() / single_rate,
        "fleet_create_p99_worst_vs_best_host": fleet_creates["p99_worst_vs_best_host"],
        "catchup_vs_replay": catchup["catchup_s"].as_f64().map(|c| c / catchup["replay_s"].as_f64().unwrap()),
        "join_vs_replay": catchup["join"]["join_s"].as_f64().zip(catchup["join"]["replay_s"].as_f64()).map(|(j, r)| j / r),
        "propagation_p99_ms_r3": r3["propagation"]["p99_ms"],
        "confirmed_revocation_p99_ms_r3": r3["confirmed_revocation"]["p99_ms"],
        "fleet_create32_r3_vs_single": r3["creates"]["creates_per_s"].as_f64().map(|r| r / single_rate),
    });
    let report = json!({
        "mode": mode.name,
        "machine": common::machine(),
        "nats_server": nats_version,
        "settings": {
            "hosts": "A, B, C: keyledger serve --nats, one stream, each its own --db; \
                      the single host: keyledger serve without --nats",
            "r3": if mode.r3 {
                "three nats-servers clustered on loopback with JetStream; three new hosts A, B, C (new stores, \
                 a new chain key), each with --nats (all three URLs) --replicas 3; A with --confirm-timeout \
                 settings.a_confirm_timeout"
            } else {
                "left out (--no-r3)"
            },
            "a_confirm_timeout": mode.a_confirm_timeout,
            "propagation_samples": mode.propagation_samples,
            "confirm_samples": mode.confirm_samples,
            "create_callers": CREATE_CALLERS,
            "create_seconds": mode.create_time.as_secs_f64(),
            "create_warmup_seconds": mode.create_warmup.as_secs_f64(),
            "catchup_records": mode.catchup_records,
            "open_reps": mode.open_reps,
            "client": "hyper 1 http1 client connections, keep-alive; one tokio worker for the load",
        },
        "targets": {
            "propagation_p99_ms": format!("<= {TARGET_PROPAGATION_P99_MS}"),
            "confirmed_revocation_p99_ms": format!("<= {TARGET_CONFIRMED_P99_MS}"),
            "fleet_create32_vs_single": ">= 0.8",
            "fleet_create32_on_writer_vs_single": "none",
            "fleet_create_p99_worst_vs_best_host": "<= 2",
            "catchup_vs_replay": format!("<= {TARGET_CATCHUP_VS_REPLAY}"),
            "join_vs_replay": format!("<= {TARGET_JOIN_VS_REPLAY}"),
            "propagation_p99_ms_r3": format!("<= {TARGET_PROPAGATION_P99_MS}"),
            "confirmed_revocation_p99_ms_r3": format!("<= {TARGET_CONFIRMED_P99_MS}"),
            "fleet_create32_r3_vs_single": "none",
        },
        "propagation": propagation,
        "confirmed_revocation": confirmed,
        "creates": {
            "fleet": fleet_creates,
            "fleet_all_on_writer": writer_creates,
            "single": single_creates,
            "admin_turns": "the admin API lets 32 requests at a time run their store call (Server::max_admin_requests, \
                            default 32; keyledger serve has no flag for it); others wait up to --read-timeout, \
                            then 503 overloaded. 32 callers on one host all fit",
        },
        "catchup": catchup,
        "r3": r3,
        "host_panics": panics,
        "nats_log_warnings": nats_log,
        "ratios": ratios,
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    print_table(&report);
    let path = common::write_report("fleet.json", &report);
    println!("wrote {}", path.display());
    if mode.keep_dir {
        println!("kept {}", dir.display());
    }
}

/// A runtime for clients: `workers` threads (0: the calling thread alone).
fn runtime(name: &str, workers: usize) -> Runtime {
    let mut builder = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder.thread_name(name).enable_all().build().unwrap()
}

/// `keyledger` with `args` run to its end; its standard output, or a panic with both.
fn keyledger(db: &Path, args: &[&str]) -> String {
    let out = served::keyledger(db).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "keyledger {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The three hosts of the fleet, stopped on drop.
struct Fleet {
    /// "R1" or "R3", in what is printed.
    label: &'static str,
    a: Served,
    b: Served,
    c: Served,
    admin: String,
    chain_key_file: PathBuf,
}

impl Fleet {
    /// In `dir`: a chain key, the first admin key on A's store, A on an empty stream (it
    /// publishes its log) on the servers at `urls` (comma-separated) with `replicas`, then
    /// B and C on empty directories (they catch up); returns once every host sees the
    /// other two live.
    fn start(dir: &Path, label: &'static str, urls: &str, replicas: u8, a_confirm_timeout: &str) -> Fleet {
        std::fs::create_dir_all(dir).unwrap();
        let ck = dir.join("chain.key");
        keyledger(dir, &["chain-key", "new", ck.to_str().unwrap()]);
        let admin = served::super_admin_key(&dir.join("a"), &ck, "root-admin", &["127.0.0.1"]);
        let replicas = replicas.to_string();
        let host = |name: &str, extra: &[&str]| {
            let mut args = vec![
                "--chain-key-file",
                ck.to_str().unwrap(),
                "--nats",
                urls,
                "--replicas",
                &replicas,
                "--host-id",
                name,
            ];
            args.extend_from_slice(extra);
            Served::start(&dir.join(name.to_lowercase()), &args)
        };
        let a = host("A", &["--confirm-timeout", a_confirm_timeout]);
        let b = host("B", &[]);
        let c = host("C", &[]);
        let fleet = Fleet {
            label,
            a,
            b,
            c,
            admin,
            chain_key_file: ck,
        };
        fleet.wait_all_live();
        fleet
    }

    fn hosts(&self) -> [(&'static str, SocketAddr); 3] {
        [("A", self.a.addr), ("B", self.b.addr), ("C", self.c.addr)]
    }

    /// Waits until every host's `/v1/fleet` lists all three hosts live; a panic saying
    /// what each host saw (and printed) if that takes longer than `PATIENCE`.
    fn wait_all_live(&self) {
        let rt = runtime("setup", 0);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let seen: Vec<(&str, Value)> = self
                .hosts()
                .iter()
                .map(|&(name, addr)| {
                    let answer = rt.block_on(async {
                        let mut conn = Conn::open(addr).await;
                        conn.send(Method::GET, "/v1/fleet", &self.admin, None).await
                    });
                    (name, answer.json())
                })
                .collect();
            let live = |v: &Value| {
                v["hosts"]
                    .as_array()
                    .map_or(0, |h| h.iter().filter(|h| h["live"] == true).count())
            };
            if seen.iter().all(|(_, v)| live(v) == 3) {
                return;
            }
            if Instant::now() > deadline {
                let errors: Vec<String> = [("A", &self.a), ("B", &self.b), ("C", &self.c)]
                    .iter()
                    .map(|(n, s)| format!("--- {n} stderr:\n{}", s.errors()))
                    .collect();
                panic!(
                    "the {} hosts did not all see each other live within {PATIENCE:?}: {seen:?}\n{}",
                    self.label,
                    errors.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the hosts (SIGTERM, as `Served` does); returns what each printed on standard
    /// error.
    fn stop(self) -> Vec<(String, String)> {
        let Fleet { a, b, c, .. } = self;
        [("A", a), ("B", b), ("C", c)]
            .into_iter()
            .map(|(name, mut served)| {
                served.terminate();
                (name.to_owned(), served.errors())
            })
            .collect()
    }
}

/// The log's stream on the cluster, and the heads bucket's (`keyledger serve`'s defaults).
const LOG_STREAM: &str = keyledger::DEFAULT_STREAM;
const HEADS_STREAM: &str = "KV_keyledger-hosts";

/// The R3 phases in `dir`: three nats-servers clustered on loopback, a new fleet on them at
/// `--replicas 3`, and the same propagation, confirmed revocation and creates as on one
/// server. Returns the report's `r3` and what each host printed on standard error; the
/// hosts, then the servers, are stopped before it returns, and on a panic (on drop).
fn on_cluster(mode: &Mode, dir: &Path) -> (Value, Vec<(String, String)>) {
    let started = Instant::now();
    let servers = dir.join("nats");
    let cluster = Cluster::start(&servers);
    cluster.wait_for_jetstream();
    let cluster_s = started.elapsed().as_secs_f64();
    // Where each server's log stood once the cluster was up: what they logged while it
    // formed (routes refused until every server listens, no meta leader yet) is left out.
    let logs: Vec<PathBuf> = (0..3)
        .map(|i| servers.join(Cluster::name(i)).join("nats.log"))
        .collect();
    let marks: Vec<usize> = logs
        .iter()
        .map(|l| std::fs::read(l).map_or(0, |b| b.len()))
        .collect();
    let client = runtime("client", 1);
    let fleet = Fleet::start(dir, "R3", &cluster.urls(), 3, &mode.a_confirm_timeout);
    // Both replicated streams have a leader and two current followers before anything is
    // measured.
    let deadline = Instant::now() + Duration::from_secs(60);
    let leaders = loop {
        let leaders = [LOG_STREAM, HEADS_STREAM].map(|s| cluster.leader(s));
        if leaders.iter().all(|l| matches!(l, Some((_, true)))) {
            break leaders.map(|l| l.unwrap().0);
        }
        assert!(
            Instant::now() < deadline,
            "the R3 streams did not settle: {leaders:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let setup_s = started.elapsed().as_secs_f64();
    eprintln!(
        "  R3: cluster up in {cluster_s:.1} s, fleet of A, B, C up in {setup_s:.1} s; {LOG_STREAM} led by {}, \
         {HEADS_STREAM} by {}",
        leaders[0], leaders[1],
    );
    let propagation = propagation(mode, &client, &fleet);
    let confirmed = confirmed_revocation(mode, &client, &fleet);
    let creates = creates(mode, &client, &fleet.hosts(), &fleet.admin);
    // Leadership may have moved under the load.
    let leaders_after = [LOG_STREAM, HEADS_STREAM].map(|s| cluster.leader(s).map(|l| l.0));
    let errors = fleet.stop();
    drop(client);
    drop(cluster);
    let warnings: Vec<String> = (0..3)
        .flat_map(|i| {
            let log = std::fs::read(&logs[i]).unwrap_or_default();
            let log = String::from_utf8_lossy(log.get(marks[i]..).unwrap_or_default()).into_owned();
            log.lines()
                .filter(|l| ["[WRN]", "[ERR]", "Slow Consumer"].iter().any(|w| l.contains(w)))
                .map(|l| format!("{}: {l}", Cluster::name(i)))
                .collect::<Vec<_>>()
        })
        .collect();
    let r3 = json!({
        "servers": 3,
        "replicas": 3,
        "leaders": {
            LOG_STREAM: leaders[0],
            HEADS_STREAM: leaders[1],
        },
        "leaders_after": {
            LOG_STREAM: leaders_after[0],
            HEADS_STREAM: leaders_after[1],
        },
        "cluster_up_s": cluster_s,
        "setup_s": setup_s,
        "propagation": propagation,
        "confirmed_revocation": confirmed,
        "creates": creates,
        "nats_log_warnings": warnings,
        "nats_log_warnings_what": "[WRN], [ERR] and Slow Consumer lines each server logged after JetStream \
                                   answered on the cluster",
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    (r3, errors)
}

/// One `keyledger serve` without `--nats`, on a store of its own.
struct SingleHost {
    served: Served,
    admin: String,
}

impl SingleHost {
    fn start(dir: &Path, ck: &Path) -> SingleHost {
        let db = dir.join("single");
        let admin = served::super_admin_key(&db, ck, "root-admin", &["127.0.0.1"]);
        let served = Served::start(&db, &["--chain-key-file", ck.to_str().unwrap()]);
        SingleHost { served, admin }
    }
}

/// A keep-alive HTTP/1.1 connection.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

/// One answer: its status, when its head arrived, and its body.
struct Answer {
    status: u16,
    at: Instant,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn expect(self, status: u16, what: &str) -> Answer {
        assert_eq!(
            self.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

impl Conn {
    /// Connects from the current runtime, which drives the connection.
    async fn open(addr: SocketAddr) -> Conn {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn { sender }
    }

    async fn send(&mut self, method: Method, path: &str, key: &str, body: Option<&Value>) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "bench")
            .header("x-api-key", key);
        let body = match body {
            Some(v) => {
                request = request.header("content-type", "application/json");
                Full::new(Bytes::from(serde_json::to_vec(v).unwrap()))
            }
            None => Full::new(Bytes::new()),
        };
        self.sender.ready().await.unwrap();
        let response = self
            .sender
            .send_request(request.body(body).unwrap())
            .await
            .unwrap();
        let at = Instant::now();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer { status, at, body }
    }

    /// `POST /v1/keys`: a key any address may present; its id and secret.
    async fn create(&mut self, admin: &str, name: &str) -> (String, String) {
        let spec = json!({ "name": name, "roles": ["bench"], "ips": [] });
        let created = self
            .send(Method::POST, "/v1/keys", admin, Some(&spec))
            .await
            .expect(201, "POST /v1/keys")
            .json();
        (
            created["id"].as_str().unwrap().to_owned(),
            created["key"].as_str().unwrap().to_owned(),
        )
    }

    /// `GET /auth` with `key`: the status (200 verified, 401 not).
    async fn auth(&mut self, key: &str) -> Answer {
        self.send(Method::GET, "/auth", key, None).await
    }

    /// Polls `/auth` with `key` until it answers `status`; panics after `PATIENCE`.
    async fn until_auth(&mut self, key: &str, status: u16, host: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.auth(key).await.status != status {
            assert!(
                Instant::now() < deadline,
                "/auth on {host} did not answer {status} within {PATIENCE:?}"
            );
        }
    }
}

/// Creates `n` keys through `addr`; returns (id, secret) of each.
fn create_keys(rt: &Runtime, addr: SocketAddr, admin: &str, n: usize, tag: &str) -> Vec<(String, String)> {
    rt.block_on(async {
        let mut conn = Conn::open(addr).await;
        let mut keys = Vec::with_capacity(n);
        for i in 0..n {
            keys.push(conn.create(admin, &format!("{tag} {i}")).await);
        }
        keys
    })
}

/// What the poller thread reports for one key.
enum Polled {
    /// The key verified on B: the delete may be sent.
    Verified,
    /// B's first 401 arrived then, after this many polls.
    Rejected(Instant, u64),
    Failed(String),
}

/// A thread polling `/auth` on one host over one keep-alive connection, a key at a time:
/// until it verifies (then says so), then until it is rejected (then says when).
struct Poller {
    jobs: Option<mpsc::Sender<String>>,
    events: mpsc::Receiver<Polled>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(addr: SocketAddr) -> Poller {
        let (jobs, job_rx) = mpsc::channel::<String>();
        let (tx, events) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("poller".into())
            .spawn(move || {
                let rt = runtime("poller", 0);
                let mut conn = rt.block_on(Conn::open(addr));
                while let Ok(key) = job_rx.recv() {
                    let outcome = rt.block_on(async {
                        let deadline = Instant::now() + PATIENCE;
                        loop {
                            match conn.auth(&key).await.status {
                                200 => break Polled::Verified,
                                401 if Instant::now() < deadline => {}
                                s => break Polled::Failed(format!("never verified on B (last answer {s})")),
                            }
                        }
                    });
                    let verified = matches!(outcome, Polled::Verified);
                    if tx.send(outcome).is_err() || !verified {
                        continue;
                    }
                    let outcome = rt.block_on(async {
                        let deadline = Instant::now() + PATIENCE;
                        let mut polls = 0;
                        loop {
                            let answer = conn.auth(&key).await;
                            polls += 1;
                            match answer.status {
                                401 => break Polled::Rejected(answer.at, polls),
                                200 if answer.at < deadline => {}
                                s => break Polled::Failed(format!("still answered {s} after {PATIENCE:?}")),
                            }
                        }
                    });
                    if tx.send(outcome).is_err() {
                        break;
                    }
                }
            })
            .unwrap();
        Poller {
            jobs: Some(jobs),
            events,
            thread: Some(thread),
        }
    }

    fn next(&self) -> Polled {
        self.events
            .recv_timeout(PATIENCE * 2)
            .unwrap_or(Polled::Failed("the poller went silent".into()))
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Deletes through A while B is polled: from A's answer to B's first 401.
fn propagation(mode: &Mode, rt: &Runtime, fleet: &Fleet) -> Value {
    let n = mode.propagation_samples;
    let keys = create_keys(rt, fleet.a.addr, &fleet.admin, n, "propagation");
    let poller = Poller::start(fleet.b.addr);
    let mut signed_ms = Vec::with_capacity(n);
    let mut delete_ms = Vec::with_capacity(n);
    let mut sent_to_reject_ms = Vec::with_capacity(n);
    let mut polls = Vec::with_capacity(n);
    let (mut before_answer, mut a_unconfirmed, mut failures) = (0, 0, Vec::new());
    let mut conn = rt.block_on(Conn::open(fleet.a.addr));
    for (id, key) in &keys {
        poller.jobs.as_ref().unwrap().send(key.clone()).unwrap();
        match poller.next() {
            Polled::Verified => {}
            Polled::Failed(why) => {
                failures.push(why);
                continue;
            }
            Polled::Rejected(..) => unreachable!(),
        }
        let sent = Instant::now();
        let answer = rt
            .block_on(conn.send(Method::DELETE, &format!("/v1/keys/{id}"), &fleet.admin, None))
            .expect(200, "DELETE on A");
        delete_ms.push(ms(answer.at - sent));
        if answer.json()["unconfirmed"]
            .as_array()
            .is_some_and(|u| !u.is_empty())
        {
            a_unconfirmed += 1;
        }
        match poller.next() {
            Polled::Rejected(at, count) => {
                polls.push(count as f64);
                sent_to_reject_ms.push(ms(at.saturating_duration_since(sent)));
                let signed = if at >= answer.at {
                    ms(at - answer.at)
                } else {
                    before_answer += 1;
                    -ms(answer.at - at)
                };
                signed_ms.push(signed);
            }
            Polled::Failed(why) => failures.push(why),
            Polled::Verified => unreachable!(),
        }
    }
    drop(poller);
    let clamped: Vec<f64> = signed_ms.iter().map(|&x| x.max(0.0)).collect();
    eprintln!(
        "  propagation A -> B ({}): {} samples, p50 {:.2} ms, p99 {:.2} ms ({} rejected before A answered, {} failed)",
        fleet.label,
        clamped.len(),
        pct(&clamped, 0.50),
        pct(&clamped, 0.99),
        before_answer,
        failures.len()
    );
    json!({
        "what": "DELETE on A (--confirm-timeout: settings.a_confirm_timeout); B's /auth polled with the key \
                 on one keep-alive connection; time from A's answer arriving to B's first 401 arriving, clamped at 0",
        "samples": clamped.len(),
        "p50_ms": pct(&clamped, 0.50),
        "p99_ms": pct(&clamped, 0.99),
        "max_ms": pct(&clamped, 1.0),
        "mean_ms": mean(&clamped),
        "unclamped_min_ms": pct(&signed_ms, 0.0),
        "unclamped_p50_ms": pct(&signed_ms, 0.50),
        "unclamped_p99_ms": pct(&signed_ms, 0.99),
        "unclamped_max_ms": pct(&signed_ms, 1.0),
        "rejected_before_answer": before_answer,
        "failures": failures,
        "sent_to_b_reject_p50_ms": pct(&sent_to_reject_ms, 0.50),
        "sent_to_b_reject_p99_ms": pct(&sent_to_reject_ms, 0.99),
        "delete_on_a_p50_ms": pct(&delete_ms, 0.50),
        "delete_on_a_p99_ms": pct(&delete_ms, 0.99),
        "a_answers_with_unconfirmed_hosts": a_unconfirmed,
        "polls_per_sample_p50": pct(&polls, 0.50),
    })
}

/// Deletes through C (the default confirmation wait): request to answer; then the key must
/// be rejected on A and B at once.
fn confirmed_revocation(mode: &Mode, rt: &Runtime, fleet: &Fleet) -> Value {
    let n = mode.confirm_samples;
    let keys = create_keys(rt, fleet.c.addr, &fleet.admin, n, "confirmed");
    let (mut latencies, mut unconfirmed, mut verified_after) = (Vec::with_capacity(n), 0, 0);
    let mut unconfirmed_hosts: BTreeMap<String, usize> = BTreeMap::new();
    rt.block_on(async {
        let mut c = Conn::open(fleet.c.addr).await;
        let mut a = Conn::open(fleet.a.addr).await;
        let mut b = Conn::open(fleet.b.addr).await;
        // The last key verifies everywhere, so every one before it does (one log).
        let last = &keys.last().unwrap().1;
        a.until_auth(last, 200, "A").await;
        b.until_auth(last, 200, "B").await;
        for (id, key) in &keys {
            let sent = Instant::now();
            let answer = c
                .send(Method::DELETE, &format!("/v1/keys/{id}"), &fleet.admin, None)
                .await
                .expect(200, "DELETE on C");
            latencies.push(ms(answer.at - sent));
            let hosts = answer.json()["unconfirmed"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !hosts.is_empty() {
                unconfirmed += 1;
                for h in hosts {
                    *unconfirmed_hosts
                        .entry(h.as_str().unwrap_or("?").to_owned())
                        .or_default() += 1;
                }
            }
            for conn in [&mut a, &mut b] {
                if conn.auth(key).await.status != 401 {
                    verified_after += 1;
                }
            }
        }
    });
    eprintln!(
        "  confirmed revocation via C ({}): {} samples, p50 {:.2} ms, p99 {:.2} ms ({unconfirmed} answers with \
         unconfirmed hosts, {verified_after} verifies after the answer)",
        fleet.label,
        latencies.len(),
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
    );
    json!({
        "what": "DELETE on C (default --confirm-timeout 15s): request sent to answer arrived; then GET /auth \
                 with the key on A and on B",
        "samples": latencies.len(),
        "p50_ms": pct(&latencies, 0.50),
        "p99_ms": pct(&latencies, 0.99),
        "max_ms": pct(&latencies, 1.0),
        "mean_ms": mean(&latencies),
        "answers_with_unconfirmed_hosts": unconfirmed,
        "unconfirmed_hosts": unconfirmed_hosts,
        "verified_on_a_or_b_after_answer": verified_after,
    })
}

/// `CREATE_CALLERS` callers creating keys for the mode's time (after a warm-up), spread
/// over `hosts` (caller i on host i mod n), each on a keep-alive connection.
fn creates(mode: &Mode, rt: &Runtime, hosts: &[(&'static str, SocketAddr)], admin: &str) -> Value {
    let run = |time: Duration, tag: &'static str| {
        rt.block_on(async {
            let start = Instant::now();
            let deadline = start + time;
            let tasks: Vec<_> = (0..CREATE_CALLERS)
                .map(|i| {
                    let (host, addr) = hosts[i % hosts.len()];
                    let admin = admin.to_owned();
                    tokio::spawn(async move {
                        let mut conn = Conn::open(addr).await;
                        let mut latencies = Vec::new();
                        let mut failures: BTreeMap<u16, (usize, String)> = BTreeMap::new();
                        let mut n = 0;
                        while Instant::now() < deadline {
                            let spec = json!({ "name": format!("{tag} {i}-{n}"), "roles": ["bench"] });
                            n += 1;
                            let sent = Instant::now();
                            let answer = conn.send(Method::POST, "/v1/keys", &admin, Some(&spec)).await;
                            if answer.status == 201 {
                                latencies.push(ms(answer.at - sent));
                            } else {
                                let body = || String::from_utf8_lossy(&answer.body).into_owned();
                                failures.entry(answer.status).or_insert_with(|| (0, body())).0 += 1;
                            }
                        }
                        (host, latencies, failures)
                    })
                })
                .collect();
            let mut latencies = Vec::new();
            let mut failures: BTreeMap<u16, (usize, String)> = BTreeMap::new();
            let mut per_host: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
            for task in tasks {
                let (host, l, f) = task.await.unwrap();
                per_host.entry(host).or_default().extend(&l);
                latencies.extend(l);
                for (s, (n, body)) in f {
                    failures.entry(s).or_insert((0, body)).0 += n;
                }
            }
            (latencies, failures, per_host, start.elapsed())
        })
    };
    run(mode.create_warmup, "warm-up");
    let (latencies, failures, per_host, elapsed) = run(mode.create_time, "load");
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    let names: Vec<&str> = hosts.iter().map(|h| h.0).collect();
    let counts: BTreeMap<u16, usize> = failures.iter().map(|(s, (n, _))| (*s, *n)).collect();
    let host_p99: Vec<f64> = per_host.values().map(|l| pct(l, 0.99)).collect();
    let best = host_p99.iter().copied().fold(f64::INFINITY, f64::min);
    let worst = host_p99.iter().copied().fold(0.0, f64::max);
    for (host, l) in &per_host {
        eprintln!(
            "    {host}: {} creates, p50 {:.2} ms, p99 {:.2} ms",
            l.len(),
            pct(l, 0.50),
            pct(l, 0.99)
        );
    }
    eprintln!(
        "  creates, {CREATE_CALLERS} callers over {}: {rate:.0}/s, p50 {:.2} ms, p99 {:.2} ms, failures {counts:?}",
        names.join(", "),
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
    );
    json!({
        "hosts": names,
        "callers": CREATE_CALLERS,
        "seconds": elapsed.as_secs_f64(),
        "creates": latencies.len(),
        "creates_per_s": rate,
        "p50_ms": pct(&latencies, 0.50),
        "p99_ms": pct(&latencies, 0.99),
        "max_ms": pct(&latencies, 1.0),
        "per_host": per_host
            .iter()
            .map(|(h, l)| (h.to_string(), json!({ "creates": l.len(), "p50_ms": pct(l, 0.50), "p99_ms": pct(l, 0.99) })))
            .collect::<serde_json::Map<_, _>>(),
        "p99_worst_vs_best_host": worst / best,
        "failures_by_status": failures
            .iter()
            .map(|(s, (n, body))| (s.to_string(), json!({ "count": n, "first_answer": body })))
            .collect::<serde_json::Map<_, _>>(),
    })
}

/// The secret of imported key `i`: 23 characters of the adopted-key alphabet.
fn secret(i: usize) -> String {
    format!("fleetbench_{i:012}")
}

/// The in-process catch-up against a single host's full replay (see the module doc).
fn catchup(mode: &Mode, dir: &Path, nats: &NatsServer) -> Value {
    let chain_key = ChainKey::from_bytes([0x6b; 32]);
    let builder = || KeyStore::builder().chain_key(chain_key.clone()).snapshot_every(0);
    let fleet = |host: &str| FleetOptions::new(nats.url()).stream("catchup").host_id(host);
    let src = dir.join("catchup-src");

    let t = Instant::now();
    let store = builder().open(&src).unwrap();
    let actor = Actor::admin("importer");
    for chunk in (0..mode.catchup_records).collect::<Vec<_>>().chunks(IMPORT_CHUNK) {
        let keys = chunk
            .iter()
            .map(|&i| {
                ExistingKey::with_secret(NewKey::new(format!("imported {i}")).role("bench"), &secret(i))
                    .unwrap()
            })
            .collect();
        store.import_keys(&actor, keys).unwrap();
    }
    let records = store.last_seq();
    drop(store);
    let fill_s = t.elapsed().as_secs_f64();
    eprintln!("  catch-up: {records} records imported in {fill_s:.1} s");

    let probe = secret(mode.catchup_records / 2);
    let anywhere = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let mut replays = Vec::new();
    for _ in 0..mode.open_reps {
        let t = Instant::now();
        let store = builder().create_if_missing(false).open(&src).unwrap();
        replays.push(t.elapsed().as_secs_f64());
        assert_eq!(store.last_seq(), records);
        assert!(store.verify(&probe, anywhere).is_ok());
        drop(store);
    }
    eprintln!("  catch-up: single-host replays {replays:.2?} s");

    let t = Instant::now();
    let origin = builder().fleet(fleet("origin")).open(&src).unwrap();
    let bootstrap_s = t.elapsed().as_secs_f64();
    assert_eq!(origin.last_seq(), records);
    drop(origin);
    let messages = keyledger::survey(&fleet("survey"), &chain_key)
        .unwrap()
        .last_position;
    eprintln!("  catch-up: stream bootstrapped with {messages} messages in {bootstrap_s:.1} s");

    // A catch-up that fails is reported (with what nats-server logged), not a panic: the
    // other figures still stand.
    let mut catchups = Vec::new();
    let mut failure = None;
    for rep in 0..mode.open_reps {
        let empty = dir.join(format!("catchup-new-{rep}"));
        let t = Instant::now();
        let store = match builder().fleet(fleet(&format!("new-{rep}"))).open(&empty) {
            Ok(store) => store,
            Err(e) => {
                let after = t.elapsed().as_secs_f64();
                eprintln!("  catch-up: FAILED after {after:.1} s: {e} ({e:?})");
                failure =
                    Some(json!({ "error": e.to_string(), "debug": format!("{e:?}"), "after_s": after }));
                break;
            }
        };
        catchups.push(t.elapsed().as_secs_f64());
        assert_eq!(
            store.last_seq(),
            records,
            "the new host's open returned before it caught up"
        );
        assert!(store.verify(&probe, anywhere).is_ok());
        drop(store);
    }
    if failure.is_none() {
        eprintln!("  catch-up: new hosts caught up in {catchups:.2?} s");
    }
    // The fastest run; a catch-up's is null if any failed.
    let best = |xs: &[f64]| xs.iter().copied().fold(f64::INFINITY, f64::min);
    let catchup_s = failure.is_none().then(|| best(&catchups));
    let join = join_from_snapshot(mode, dir, nats, &src, records);
    json!({
        "what": "imported keys (one record each) in chunks of 5000, snapshots off; replay: reopen as a single \
                 host; catch-up: a new host (FleetOptions, snapshots off) on an empty directory, from the \
                 stream the store bootstrapped; the fastest of open_reps each",
        "records": records,
        "fill_s": fill_s,
        "replay_s": best(&replays),
        "replay_runs_s": replays,
        "bootstrap_s": bootstrap_s,
        "stream_messages": messages,
        "catchup_s": catchup_s,
        "catchup_runs_s": catchups,
        "replay_records_per_s": records as f64 / best(&replays),
        "catchup_records_per_s": catchup_s.map(|s| records as f64 / s),
        "catchup_failure": failure,
        "join": join,
    })
}

/// Records appended after the published snapshot before new hosts join, as a share of
/// the stream: 50k at 1M records, half the default snapshot interval (the average tail).
const JOIN_TAIL_SHARE: usize = 20;

/// A new host joining from the published snapshot against one replaying the whole stream,
/// both on the same stream: the catch-up source publishes a snapshot (its default interval,
/// saved when it closes), then a twentieth more records are imported; then new hosts join
/// with snapshots on (from the snapshot, replaying the tail) and off (the whole stream).
fn join_from_snapshot(mode: &Mode, dir: &Path, nats: &NatsServer, src: &Path, records: u64) -> Value {
    let chain_key = ChainKey::from_bytes([0x6b; 32]);
    let fleet = |host: &str| FleetOptions::new(nats.url()).stream("catchup").host_id(host);
    let open = |every: u64, host: &str, path: &Path| {
        KeyStore::builder()
            .chain_key(chain_key.clone())
            .snapshot_every(every)
            .fleet(fleet(host))
            .open(path)
    };
    let t = Instant::now();
    let origin = open(100_000, "origin", src).unwrap();
    drop(origin);
    let publish_s = t.elapsed().as_secs_f64();
    let origin = open(0, "origin", src).unwrap();
    let actor = Actor::admin("importer");
    let first = mode.catchup_records;
    let tail = mode.catchup_records / JOIN_TAIL_SHARE;
    for chunk in (first..first + tail).collect::<Vec<_>>().chunks(IMPORT_CHUNK) {
        let keys = chunk
            .iter()
            .map(|&i| {
                ExistingKey::with_secret(NewKey::new(format!("imported {i}")).role("bench"), &secret(i))
                    .unwrap()
            })
            .collect();
        origin.import_keys(&actor, keys).unwrap();
    }
    let total = origin.last_seq();
    drop(origin);
    eprintln!("  join: snapshot at record {records} published in {publish_s:.1} s, then {tail} records");
    let probe = secret(mode.catchup_records + tail / 2);
    let anywhere = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let (mut joins, mut verified, mut replays) = (Vec::new(), Vec::new(), Vec::new());
    // Joining hosts take no snapshot of their own (not even at close, which would publish
    // a newer one for the next repetition): every repetition joins from the same snapshot.
    let joining = u64::MAX / 2;
    for rep in 0..mode.open_reps {
        for every in [joining, 0] {
            let name = format!("join-{}-{rep}", if every == 0 { "replay" } else { "snapshot" });
            let empty = dir.join(&name);
            let t = Instant::now();
            let store = match open(every, &name, &empty) {
                Ok(store) => store,
                Err(e) => return json!({ "error": e.to_string() }),
            };
            let opened = t.elapsed().as_secs_f64();
            assert_eq!(store.last_seq(), total);
            assert!(store.verify(&probe, anywhere).is_ok());
            if every == 0 {
                replays.push(opened);
            } else {
                assert!(
                    store.opened_from_snapshot(),
                    "the new host joined from the snapshot"
                );
                joins.push(opened);
                while store.integrity() == keyledger::Integrity::Verifying {
                    std::thread::sleep(Duration::from_millis(5));
                }
                assert_eq!(store.integrity(), keyledger::Integrity::Verified);
                verified.push(t.elapsed().as_secs_f64());
            }
            drop(store);
        }
    }
    let best = |xs: &[f64]| xs.iter().copied().fold(f64::INFINITY, f64::min);
    eprintln!(
        "  join: from the snapshot {joins:.2?} s (history verified at {verified:.2?} s); whole stream {replays:.2?} s"
    );
    json!({
        "what": "the catch-up stream, a snapshot published at its end (snapshot_every 100000, saved at close), \
                 then a twentieth more records; a new host on an empty directory joining from the snapshot \
                 (open returns: serving, the history still being fetched) against one replaying the whole \
                 stream (snapshots off); the fastest of open_reps each",
        "snapshot_seq": records,
        "records": total,
        "tail_records": tail,
        "publish_s": publish_s,
        "join_s": best(&joins),
        "join_runs_s": joins,
        "history_verified_s": best(&verified),
        "history_verified_runs_s": verified,
        "replay_s": best(&replays),
        "replay_runs_s": replays,
    })
}

fn nats_version() -> String {
    std::process::Command::new(nats::binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `p` quantile (nearest rank below) of `xs`; NaN for none.
fn pct(xs: &[f64], p: f64) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    xs.get(((xs.len() as f64 - 1.0) * p) as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn print_table(r: &Value) {
    let mc = &r["machine"];
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    println!();
    let r3 = &r["r3"];
    println!(
        "keyledger fleet: {} mode; 3 hosts + {} on loopback (R1: one server{}); {} ({} cores), linux {}",
        r["mode"].as_str().unwrap_or(""),
        r["nats_server"].as_str().unwrap_or("nats-server"),
        if r3.is_null() {
            ""
        } else {
            "; R3: a cluster of three, --replicas 3"
        },
        mc["cpu"].as_str().unwrap_or("?"),
        mc["cores"],
        mc["kernel"].as_str().unwrap_or("?"),
    );
    println!("{:<49}  {:>9}  {:>9}  {:>9}", "latency (ms)", "p50", "p99", "max");
    let mut runs = vec![("R1", r)];
    if !r3.is_null() {
        runs.push(("R3", r3));
    }
    for (run, x) in &runs {
        for (label, x) in [
            ("propagation: A's delete answer -> B's 401", &x["propagation"]),
            ("confirmed revocation: delete via C", &x["confirmed_revocation"]),
        ] {
            println!(
                "{:<49}  {:>9.2}  {:>9.2}  {:>9.2}",
                format!("{run} {label}"),
                f(&x["p50_ms"]),
                f(&x["p99_ms"]),
                f(&x["max_ms"])
            );
        }
    }
    for (run, x) in &runs {
        let (p, c) = (&x["propagation"], &x["confirmed_revocation"]);
        println!(
            "  {run} propagation: {} samples, B rejected before A answered in {}, {} failed; \
             confirmed: {} samples, {} with unconfirmed hosts, {} verified on A/B after the answer",
            p["samples"],
            p["rejected_before_answer"],
            p["failures"].as_array().map_or(0, Vec::len),
            c["samples"],
            c["answers_with_unconfirmed_hosts"],
            c["verified_on_a_or_b_after_answer"],
        );
    }
    if !r3.is_null() {
        println!(
            "  R3 leaders: {LOG_STREAM} on {} (after: {}), {HEADS_STREAM} on {} (after: {}); \
             {} warning lines in the servers' logs once up (r3.nats_log_warnings)",
            r3["leaders"][LOG_STREAM],
            r3["leaders_after"][LOG_STREAM],
            r3["leaders"][HEADS_STREAM],
            r3["leaders_after"][HEADS_STREAM],
            r3["nats_log_warnings"].as_array().map_or(0, Vec::len),
        );
    }
    println!();
    println!(
        "{:<49}  {:>9}  {:>9}  {:>9}",
        "creates, 32 callers", "per s", "p50 ms", "p99 ms"
    );
    let mut rows = vec![
        ("R1 fleet (A, B, C)", &r["creates"]["fleet"]),
        (
            "R1 fleet, all on the writer A",
            &r["creates"]["fleet_all_on_writer"],
        ),
    ];
    if !r3.is_null() {
        rows.push(("R3 fleet (A, B, C)", &r3["creates"]));
    }
    rows.push(("single host", &r["creates"]["single"]));
    for (label, x) in rows {
        println!(
            "{label:<49}  {:>9.0}  {:>9.2}  {:>9.2}",
            f(&x["creates_per_s"]),
            f(&x["p50_ms"]),
            f(&x["p99_ms"])
        );
    }
    let cu = &r["catchup"];
    println!();
    let catchup = match cu["catchup_s"].as_f64() {
        Some(s) => format!("{s:.2} s"),
        None => format!(
            "FAILED after {:.1} s: {}",
            f(&cu["catchup_failure"]["after_s"]),
            cu["catchup_failure"]["error"].as_str().unwrap_or("?")
        ),
    };
    println!(
        "{} records (stream of {} messages, bootstrapped in {:.1} s): single-host replay {:.2} s, \
         new host's catch-up {catchup}",
        cu["records"],
        cu["stream_messages"],
        f(&cu["bootstrap_s"]),
        f(&cu["replay_s"]),
    );
    let join = &cu["join"];
    match join["error"].as_str() {
        Some(e) => println!("joining from a snapshot FAILED: {e}"),
        None => println!(
            "then a snapshot at record {} and {} more records: a new host joins from it in {:.2} s \
             (history fetched and proven at {:.2} s), replays the whole stream in {:.2} s",
            join["snapshot_seq"],
            join["tail_records"],
            f(&join["join_s"]),
            f(&join["history_verified_s"]),
            f(&join["replay_s"]),
        ),
    }
    println!();
    println!("{:<36}  {:>9}  {:>9}", "ratio", "measured", "target");
    for (k, x) in r["ratios"].as_object().unwrap() {
        let target = r["targets"][k].as_str().unwrap_or("");
        let x = x
            .as_f64()
            .map_or_else(|| "null".to_owned(), |x| format!("{x:.3}"));
        println!("{k:<36}  {x:>9}  {target:>9}");
    }
    for line in r["nats_log_warnings"].as_array().into_iter().flatten() {
        println!("nats-server: {}", line.as_str().unwrap_or(""));
    }
    if let Some(p) = r["host_panics"].as_object().filter(|p| !p.is_empty()) {
        println!();
        for (host, lines) in p {
            println!("warning: host {host} panicked: {}", lines.as_str().unwrap_or(""));
        }
    }
}
