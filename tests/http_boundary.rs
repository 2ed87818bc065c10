//! `keyledger serve` against a hostile client at its HTTP boundary: connections hoarded by
//! one client or many, answers carrying secrets kept out of caches, refusals that tell a
//! thief nothing, and the client address behind a proxy that has an address of its own.
//! The binary on loopback, with clients bound to addresses of 127.0.0.0/8 of their own, and
//! a real nginx.

#![allow(clippy::unwrap_used)]

#[path = "support/nginx.rs"]
mod nginx;
#[path = "support/served.rs"]
mod served;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use served::{Served, keyledger};

/// The nginx (or test client) address trusted as the proxy.
const PROXY: &str = "127.0.0.2";
/// The address the service key is whitelisted for: the real client behind the proxy.
const CLIENT: &str = "127.0.0.9";

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let from: IpAddr = from.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        socket.connect(to).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// One answer, read whole.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Sends one request on `stream` (closing it after) and reads the answer, for at most
/// `within`; `None` if none came in time.
fn exchange(mut stream: TcpStream, request: &str, within: Duration) -> Option<Answer> {
    stream.set_read_timeout(Some(within)).unwrap();
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
        if Instant::now() > deadline {
            return None;
        }
    }
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    // Small bodies only: de-chunk the one chunk a JSON answer comes in.
    let body = match head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        true => body.split("\r\n").nth(1).unwrap_or_default().to_owned(),
        false => body.to_owned(),
    };
    Some(Answer {
        status,
        head: head.to_owned(),
        body,
    })
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        r.push_str(&format!("{name}: {value}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r
}

/// `from` asks `addr`'s `/auth` about `key`, as a proxy naming `client` would.
fn auth(addr: SocketAddr, from: &str, key: &str, client: Option<&str>, within: Duration) -> Option<Answer> {
    let mut headers = vec![("x-api-key", key)];
    if let Some(client) = client {
        headers.push(("X-Forwarded-For", client));
    }
    exchange(
        connect_from(from, addr),
        &request("GET", "/auth", &headers, ""),
        within,
    )
}

/// A connection that sends part of a request's headers and never the rest (slowloris).
fn hoard(from: &str, addr: SocketAddr) -> TcpStream {
    let mut stream = connect_from(from, addr);
    // A connection turned away may be closed before this write lands.
    let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: hoarder\r\nX-Slow: ");
    stream
}

/// Whether the server answered 503 or closed `stream` within `within`.
fn turned_away(mut stream: &TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => buf[..n].starts_with(b"HTTP/1.1 503"),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// A store with a super-admin key `root` (any loopback address) and a service key `svc`
/// whitelisted for [`CLIENT`] only: their secrets.
fn store(db: &Path) -> (String, String) {
    let create = |args: &[&str]| -> Value {
        let out = keyledger(db)
            .args([
                "create",
                "--actor",
                "root",
                "--actor-role",
                "super-admin",
                "--json",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let root = create(&["--name", "root", "--role", "super-admin", "--ip", "127.0.0.0/8"]);
    let svc = create(&["--name", "svc", "--role", "bot", "--ip", CLIENT]);
    (
        root["key"].as_str().unwrap().to_owned(),
        svc["key"].as_str().unwrap().to_owned(),
    )
}

const PROMPT: Duration = Duration::from_secs(3);

/// How many of `streams` the server turned away: given a moment to accept them all, a
/// turned-away one has its answer or its close waiting, a held one has nothing.
fn count_turned_away(streams: &[TcpStream]) -> usize {
    std::thread::sleep(Duration::from_secs(1));
    streams
        .iter()
        .filter(|s| turned_away(s, Duration::from_millis(100)))
        .count()
}

#[test]
fn one_client_hoarding_connections_keeps_out_neither_the_proxy_nor_other_clients() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, svc) = store(&db);
    let served = Served::start(
        &db,
        &[
            "--max-connections",
            "32",
            "--max-connections-per-client",
            "4",
            "--trusted-proxy",
            PROXY,
            // Long enough that a request waiting for a hoarded slot to time out fails the
            // test's bounds.
            "--read-timeout",
            "20",
        ],
    );
    let hoarded: Vec<TcpStream> = (0..100).map(|_| hoard("127.0.0.3", served.addr)).collect();
    // The first four are the hoarder's share; every other one is turned away at once.
    let turned = count_turned_away(&hoarded[4..]);
    assert_eq!(
        turned, 96,
        "connections past the client's share are not turned away"
    );
    let started = Instant::now();
    let passed = auth(served.addr, PROXY, &svc, Some(CLIENT), PROMPT)
        .expect("the proxy's /auth waited for a hoarded slot");
    assert_eq!(passed.status, 200, "{passed:?}");
    let other = exchange(
        connect_from("127.0.0.4", served.addr),
        &request("GET", "/healthz", &[], ""),
        PROMPT,
    )
    .expect("another client waited for a hoarded slot");
    assert_eq!(other.status, 200, "{other:?}");
    assert!(started.elapsed() < PROMPT * 2, "{:?}", started.elapsed());
    // The hoarder's own share is still held, not dropped.
    assert!(!turned_away(&hoarded[0], Duration::from_millis(200)));
}

#[test]
fn many_hoarding_clients_cannot_take_the_slots_kept_for_the_proxy() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, svc) = store(&db);
    let served = Served::start(
        &db,
        &[
            "--max-connections",
            "32",
            "--max-connections-per-client",
            "2",
            "--trusted-proxy",
            PROXY,
            "--proxy-connections",
            "8",
            "--read-timeout",
            "20",
        ],
    );
    // Twenty clients, each within its share, try for 40 slots: 24 are theirs to share.
    let hoarded: Vec<TcpStream> = (1..=20)
        .flat_map(|i| {
            let from = format!("127.0.1.{i}");
            [hoard(&from, served.addr), hoard(&from, served.addr)]
        })
        .collect();
    let turned = count_turned_away(&hoarded);
    assert_eq!(turned, 16, "clients took slots kept for the proxy");
    let fresh = hoard("127.0.0.4", served.addr);
    assert!(
        turned_away(&fresh, PROMPT),
        "a client took a slot kept for the proxy"
    );
    // The proxy holds seven idle connections of its own and still gets its answer on an
    // eighth: the kept slots are all its own.
    let _idle: Vec<TcpStream> = (0..7).map(|_| connect_from(PROXY, served.addr)).collect();
    let passed = auth(served.addr, PROXY, &svc, Some(CLIENT), PROMPT)
        .expect("the proxy's /auth waited for a slot held by other clients");
    assert_eq!(passed.status, 200, "{passed:?}");
}

#[test]
fn a_proxy_share_that_leaves_other_clients_nothing_is_refused() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    store(&db);
    let out = keyledger(&db)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "8",
            "--trusted-proxy",
            PROXY,
            "--proxy-connections",
            "8",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--proxy-connections"),
        "{out:?}"
    );
}

#[test]
fn admin_answers_carrying_a_secret_are_never_stored_by_a_cache() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (root, _) = store(&db);
    let served = Served::start(&db, &[]);
    let call = |method: &str, path: &str, body: &str| {
        let headers = [("x-api-key", root.as_str()), ("content-type", "application/json")];
        exchange(
            connect_from("127.0.0.1", served.addr),
            &request(method, path, &headers, body),
            PROMPT,
        )
        .unwrap()
    };
    let body = json!({"name": "billing", "roles": ["bot"], "ips": ["127.0.0.1"]}).to_string();
    let created = call("POST", "/v1/keys", &body);
    assert_eq!(created.status, 201, "{created:?}");
    assert!(created.json()["key"].is_string());
    assert_eq!(created.header("cache-control"), Some("no-store"), "{created:?}");
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let rolled = call("POST", &format!("/v1/keys/{id}/roll"), "{}");
    assert_eq!(rolled.status, 200, "{rolled:?}");
    assert!(rolled.json()["key"].is_string());
    assert_eq!(rolled.header("cache-control"), Some("no-store"), "{rolled:?}");
    let listed = call("GET", "/v1/keys?unpaged=true", "");
    assert_eq!(listed.status, 200);
    assert_eq!(listed.header("cache-control"), Some("no-store"), "{listed:?}");
    for nowhere in ["/v1", "/v1/", "/v1/no-such-route"] {
        let lost = call("GET", nowhere, "");
        assert_eq!(lost.status, 404, "{nowhere}: {lost:?}");
        assert_eq!(
            lost.header("cache-control"),
            Some("no-store"),
            "{nowhere}: {lost:?}"
        );
    }
}

#[test]
fn opaque_refusals_tell_a_thief_nothing_about_a_live_key() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, svc) = store(&db);
    let plain = Served::start(&db, &["--trusted-proxy", PROXY]);
    // The stolen key from the wrong address: by default, the refusal says it is live.
    let told = auth(plain.addr, PROXY, &svc, Some("127.0.0.66"), PROMPT).unwrap();
    assert_eq!(told.status, 403);
    assert_eq!(told.json()["reason"], "ip_not_whitelisted");
    drop(plain);

    let opaque = Served::start(&db, &["--trusted-proxy", PROXY, "--opaque-refusals"]);
    let live_elsewhere = auth(opaque.addr, PROXY, &svc, Some("127.0.0.66"), PROMPT).unwrap();
    let unknown = "klk_000000000000000000000000000000000000";
    let never_issued = auth(opaque.addr, PROXY, unknown, Some("127.0.0.66"), PROMPT).unwrap();
    for answer in [&live_elsewhere, &never_issued] {
        assert_eq!(answer.status, 401, "{answer:?}");
        assert_eq!(
            answer.json(),
            json!({"error": "unauthorized", "reason": "unauthorized"})
        );
        assert_eq!(
            answer.header("www-authenticate"),
            Some(r#"ApiKey header="x-api-key""#)
        );
    }
    assert_eq!(live_elsewhere.body, never_issued.body);
    // The admin API answers its key refusals the same way.
    let whoami = exchange(
        connect_from("127.0.0.66", opaque.addr),
        &request("GET", "/v1/whoami", &[("x-api-key", svc.as_str())], ""),
        PROMPT,
    )
    .unwrap();
    assert_eq!(whoami.status, 401, "{whoami:?}");
    assert_eq!(whoami.body, never_issued.body);
    // The key itself still passes from its own address.
    let passed = auth(opaque.addr, PROXY, &svc, Some(CLIENT), PROMPT).unwrap();
    assert_eq!(passed.status, 200, "{passed:?}");
}

/// An app behind nginx that answers 200 `app` to anything, one connection at a time.
fn app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\napp");
        }
    });
    addr
}

#[test]
fn behind_a_proxy_with_an_address_of_its_own_a_client_on_its_host_cannot_forge_its_address() {
    nginx::binary();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, svc) = store(&db);

    // Trusting the proxy's host address (127.0.0.1) lets anything else on that host name
    // its own client address: the forgery the README warns about.
    let careless = Served::start(&db, &["--trusted-proxy", "127.0.0.1"]);
    let forged = auth(careless.addr, "127.0.0.1", &svc, Some(CLIENT), PROMPT).unwrap();
    assert_eq!(forged.status, 200, "{forged:?}");
    drop(careless);

    // nginx with `proxy_bind 127.0.0.2`, and only that address trusted.
    let served = Served::start(&db, &["--trusted-proxy", PROXY]);
    let proxy = nginx::Nginx::start_bound(&dir.path().join("nginx"), served.addr, app(), Some(PROXY));
    let forged = auth(served.addr, "127.0.0.1", &svc, Some(CLIENT), PROMPT).unwrap();
    assert_eq!(forged.status, 403, "{forged:?}");
    assert_eq!(forged.json()["reason"], "ip_not_whitelisted");
    let through = |from: &str, forwarded: Option<&str>| {
        let mut headers = vec![("x-api-key", svc.as_str())];
        if let Some(f) = forwarded {
            headers.push(("X-Forwarded-For", f));
        }
        exchange(
            connect_from(from, proxy.addr),
            &request("GET", "/api/messages", &headers, ""),
            PROMPT,
        )
        .unwrap()
    };
    // The real client passes through nginx; one on another address cannot borrow the
    // client's address through nginx either (nginx appends the real peer).
    let real = through(CLIENT, None);
    assert_eq!((real.status, real.body.as_str()), (200, "app"), "{real:?}");
    assert_eq!(through("127.0.0.1", Some(CLIENT)).status, 403);
    // What the dedicated address cannot stop: any process on the host may bind it (on
    // Linux, all of 127.0.0.0/8 is bindable without privilege), and is then the proxy.
    // The README says so, and how to close it (a firewall rule on the address's owner).
    let borrowed = auth(served.addr, PROXY, &svc, Some(CLIENT), PROMPT).unwrap();
    assert_eq!(borrowed.status, 200, "{borrowed:?}");
}
