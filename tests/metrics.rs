//! `keyledger serve --metrics-listen`: `/metrics` on a listener of its own counts every
//! `/auth` decision by reason and every admin request by route and status, exactly;
//! Debian's `promtool` accepts the exposition, and a real Prometheus server scraping it
//! answers a PromQL query with the same counts. The public listener never serves it, and
//! a bad or taken address is refused before anything is served.

#![allow(clippy::unwrap_used)]

#[path = "support/served.rs"]
mod served;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use served::{Served, keyledger};

/// Where Debian's `prometheus` package puts its programs.
const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// The program at `path`, or a panic saying how to get it: a missing Prometheus must fail
/// the test, not skip it.
fn program(path: &'static str) -> &'static str {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: .ci/run (test.sh) installs it with \
         `apt-get install --no-install-recommends prometheus`; install it the same way to run this test"
    );
    path
}

/// One request on a connection of its own (HTTP/1.0: the answer ends with the
/// connection, never chunked): the status and the body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A super-admin key for `root` on 127.0.0.1, made with the command line: its secret.
fn root_key(db: &Path) -> String {
    let out = keyledger(db)
        .args(["create", "--actor", "root", "--actor-role", "super-admin"])
        .args([
            "--name",
            "root-admin",
            "--role",
            "super-admin",
            "--ip",
            "127.0.0.1",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    created["key"].as_str().unwrap().to_owned()
}

/// `serve` with `--metrics-listen` on free loopback ports: the server and the metrics
/// listener's address.
fn serve_with_metrics(db: &Path) -> (Served, SocketAddr) {
    let served = Served::start(db, &["--metrics-listen", "127.0.0.1:0"]);
    let line = served
        .lines
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no metrics address: {}", served.errors()));
    let metrics = line
        .strip_prefix("metrics listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    (served, metrics)
}

/// Every sample of an exposition, by its name and labels as written.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// `secret` with one character of its body changed: its checksum no longer holds.
fn typo(secret: &str) -> String {
    let mut bytes = secret.as_bytes().to_vec();
    bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn metrics_count_each_auth_decision_and_admin_request_and_promtool_and_prometheus_agree() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("keys.db");
    let root = root_key(&db);
    let (served, metrics) = serve_with_metrics(&db);
    let addr = served.addr;
    let as_root = [("x-api-key", root.as_str())];

    // Admin requests: their key checks are not /auth decisions.
    let new = json!({"name": "billing", "roles": ["bot"], "ips": ["127.0.0.1"]}).to_string();
    let (status, body) = request(addr, "POST", "/v1/keys", &as_root, &new);
    assert_eq!(status, 201, "{body}");
    let secret = serde_json::from_str::<Value>(&body).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(request(addr, "GET", "/v1/keys", &as_root, "").0, 200);
    assert_eq!(request(addr, "GET", "/v1/keys/not-an-id", &as_root, "").0, 400);
    let forged = typo(&root);
    assert_eq!(
        request(addr, "GET", "/v1/keys", &[("x-api-key", &forged)], "").0,
        401
    );
    assert_eq!(request(addr, "BREW", "/v1/keys", &as_root, "").0, 405);

    // /auth: 3 accepted, 5 refused for 4 reasons.
    let mistyped = typo(&secret);
    let cases: [(&str, Option<&str>, u16); 8] = [
        ("/auth", Some(&secret), 200),
        ("/auth?role=bot", Some(&secret), 200),
        ("/auth/some/path", Some(&secret), 200),
        ("/auth", Some(&mistyped), 401),
        ("/auth", Some(&mistyped), 401),
        ("/auth", None, 401),
        ("/auth?role=admin", Some(&secret), 403),
        ("/auth?cost=0", Some(&secret), 403),
    ];
    for (path, key, expected) in cases {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        assert_eq!(request(addr, "GET", path, &headers, "").0, expected, "{path}");
    }

    let (status, text) = request(metrics, "GET", "/metrics", &[], "");
    assert_eq!(status, 200, "{text}");
    let got = samples(&text);
    let decision = |outcome: &str, reason: &str| {
        got[&format!("keyledger_auth_decisions_total{{outcome=\"{outcome}\",reason=\"{reason}\"}}")]
    };
    assert_eq!(decision("accepted", "ok"), 3.0);
    assert_eq!(decision("rejected", "malformed_checksum"), 2.0);
    assert_eq!(decision("rejected", "header_missing"), 1.0);
    assert_eq!(decision("rejected", "role_missing"), 1.0);
    assert_eq!(decision("rejected", "cost_invalid"), 1.0);
    assert_eq!(decision("rejected", "unknown_key"), 0.0);
    let decisions: f64 = got
        .iter()
        .filter(|(k, _)| k.starts_with("keyledger_auth_decisions_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(decisions, 8.0, "the admin API's key checks are not counted");
    assert_eq!(got["keyledger_verify_duration_seconds_count"], 8.0);
    assert_eq!(got["keyledger_verify_duration_seconds_bucket{le=\"+Inf\"}"], 8.0);
    assert!(got["keyledger_verify_duration_seconds_sum"] > 0.0);
    let admin = |method: &str, route: &str, status: u16| {
        got.get(&format!(
            "keyledger_admin_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
        ))
        .copied()
    };
    assert_eq!(admin("POST", "/v1/keys", 201), Some(1.0));
    assert_eq!(admin("GET", "/v1/keys", 200), Some(1.0));
    assert_eq!(admin("GET", "/v1/keys", 401), Some(1.0));
    assert_eq!(admin("GET", "/v1/keys/{id}", 400), Some(1.0));
    // A method the client made up is not a label of its own.
    assert_eq!(admin("other", "/v1/keys", 405), Some(1.0));
    assert!(!text.contains("BREW"));
    // One create: one batch of one command, made durable with one sync.
    assert_eq!(got["keyledger_writer_batch_commands_count"], 1.0);
    assert_eq!(got["keyledger_writer_batch_commands_sum"], 1.0);
    assert_eq!(got["keyledger_writer_commit_duration_seconds_count"], 1.0);
    assert_eq!(got["keyledger_log_sync_duration_seconds_count"], 1.0);
    assert_eq!(got["keyledger_live_keys"], 2.0);
    assert_eq!(got["keyledger_log_records"], 2.0);
    for secret in [&root, &secret] {
        assert!(!text.contains(secret.as_str()), "a secret in the exposition");
    }

    let check = Command::new(program(PROMTOOL))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.as_ref().unwrap().write_all(text.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {checked:?}"
    );

    let prometheus = Prometheus::start(dir.path(), metrics);
    let accepted = r#"keyledger_auth_decisions_total{outcome="accepted",reason="ok"}"#;
    assert_eq!(prometheus.query(accepted), "3");
    let refused = r#"sum(keyledger_auth_decisions_total{outcome="rejected"})"#;
    assert_eq!(prometheus.query(refused), "5");
    drop(prometheus);
    drop(served);
}

#[test]
fn the_public_listener_never_serves_metrics() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("keys.db");
    let root = root_key(&db);
    let (served, metrics) = serve_with_metrics(&db);
    for (path, key) in [
        ("/metrics", None),
        ("/metrics", Some(root.as_str())),
        ("/v1/metrics", Some(&root)),
    ] {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        let (status, body) = request(served.addr, "GET", path, &headers, "");
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("keyledger_"), "{body}");
    }
    // And the metrics listener serves nothing else.
    for path in ["/auth", "/healthz", "/v1/keys", "/"] {
        let (status, body) = request(metrics, "GET", path, &[("x-api-key", &root)], "");
        assert_eq!(status, 404, "{path}: {body}");
    }
    assert_eq!(request(metrics, "GET", "/metrics", &[], "").0, 200);
}

#[test]
fn metrics_listen_refuses_a_bad_or_taken_address_before_serving() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("keys.db");
    root_key(&db);
    let bad = keyledger(&db)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "localhost:http",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--metrics-listen"),
        "{bad:?}"
    );
    assert!(bad.stdout.is_empty(), "{bad:?}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = keyledger(&db)
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", &port])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains(&format!("cannot listen on {port} for metrics")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing was served: {out:?}");
}

#[test]
fn a_store_counts_the_layers_decisions_only_with_statistics_on() {
    use keyledger::{Actor, ApiKeyLayer, KeyStore, NewKey, PeerAddr};
    for on in [true, false] {
        let store = Arc::new(KeyStore::builder().statistics(on).open_temporary().unwrap());
        let created = store
            .create_key(&Actor::admin("alice"), NewKey::new("bot").role("bot"))
            .unwrap();
        let layer = ApiKeyLayer::new(Arc::clone(&store));
        let mut extensions = http::Extensions::new();
        extensions.insert(PeerAddr("127.0.0.1:9".parse().unwrap()));
        let mut headers = http::HeaderMap::new();
        headers.insert("x-api-key", created.key.expose_secret().parse().unwrap());
        assert!(layer.check(&headers, &extensions).is_ok());
        assert!(layer.check(&http::HeaderMap::new(), &extensions).is_err());
        let stats = store.statistics();
        let missing = stats
            .refused
            .iter()
            .find(|(r, _)| *r == "header_missing")
            .unwrap()
            .1;
        let n = u64::from(on);
        assert_eq!(
            (stats.accepted, missing, stats.verify_seconds.count),
            (n, n, 2 * n)
        );
        assert_eq!(stats.batch_commands.count, n);
        assert_eq!((stats.live_keys, stats.log_records), (1, 1));
    }
}

/// A real Prometheus server (Debian's) in a directory of its own on a free loopback port,
/// scraping one target every 200 ms; killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let home = dir.join("prometheus");
        std::fs::create_dir_all(&home).unwrap();
        let config = home.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\n\
                 scrape_configs:\n  - job_name: keyledger\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(program(PROMETHEUS))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", home.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut prometheus = Prometheus { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(addr).is_ok() && request(addr, "GET", "/-/ready", &[], "").0 == 200 {
                return prometheus;
            }
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                let log = std::fs::read_to_string(home.join("stderr")).unwrap_or_default();
                panic!("prometheus exited ({status}): {log}");
            }
            assert!(Instant::now() < deadline, "prometheus was not ready within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of the one series `promql` answers with, once it answers with one
    /// (within 60 s: the first scrapes come after start).
    fn query(&self, promql: &str) -> String {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = request(
                self.addr,
                "GET",
                &format!("/api/v1/query?query={encoded}"),
                &[],
                "",
            );
            assert_eq!(status, 200, "{promql}: {body}");
            let answer: Value = serde_json::from_str(&body).unwrap();
            if let Some(value) = answer["data"]["result"][0]["value"][1].as_str() {
                return value.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: no series within 60 s: {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
