//! keyledger over HTTP, measured with a load generator written here on hyper: keep-alive
//! HTTP/1.1 connections over loopback, each sending its next request as soon as the last
//! is answered, for a fixed time, recording every request's latency.
//!
//! - `layer_vs_bare`: one axum route, served bare and behind `ApiKeyLayer` (a key that
//!   verifies on every request), from the same server. Targets: `layer_rps_vs_bare` ≥ 0.95,
//!   `layer_p99_vs_bare` ≤ 1.10. Also the layer's own cost per passing request, in process
//!   (no network), against a trivial inner service.
//! - `auth_vs_trivial`: `keyledger serve`'s `/auth` (the library's `Server`, as the binary
//!   runs it) against its `/healthz` on the same server. Target: `auth_rps_vs_trivial` ≥ 0.9.
//! - `limited_auth_vs_plain`: `/auth` with keys holding a rate limit no run reaches (every
//!   request takes from its key's bucket, and the 200 carries the RateLimit headers)
//!   against keys holding none, on one server. Target: `limited_auth_rps_vs_plain` ≥ 0.95.
//! - `metrics_on_vs_off`: `/auth` on a store that counts its decisions, with `/metrics` on
//!   a listener of its own scraped every second meanwhile, against a store opened with
//!   `statistics(false)`, each on a server of its own (`benches/http/metrics.rs`). Target:
//!   `metrics_rps_vs_off` ≥ 0.97.
//! - `nginx_auth_vs_plain`: nginx (Debian's, one worker) with `auth_request` to that server
//!   before an upstream app, against the same nginx proxying to the same app with no auth:
//!   `nginx_auth_rps_vs_plain`, reported with no target (it is mostly nginx's subrequest).
//!   Skipped, with a note in the report, when `/usr/sbin/nginx` is missing.
//!
//! - `auth_under_hoarding`: `/auth` for a good key, asked on new connections from the
//!   trusted proxy's address while one client hoards 1,100 slowloris connections, with the
//!   server's default connection limits and without them: p50/p99/max in milliseconds
//!   (`benches/http/hoarding.rs`).
//! - `keys_page`: `GET /v1/keys` pages of 100 out of `--page-keys N` keys (1,000,000 by
//!   default): p50/p99 of the first page, one from the middle, a filtered one, and a filter
//!   matching none (`benches/http/pages.rs`). Target: `keys_page_p99_ms` ≤ 2.
//!
//! `cargo bench --bench http` (`-- --quick` for a short run, `-- --only NAME` for one
//! comparison). The server and the client
//! each get one runtime with one worker thread (the machines have two cores); the routes
//! are measured in alternating order, round after round, and the ratios are medians of
//! each round's ratio, so the machine's drift cancels. Prints a table and writes
//! `target/bench/http.json`.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "http/hoarding.rs"]
mod hoarding;
#[path = "http/metrics.rs"]
mod metrics;
#[path = "../tests/support/nginx.rs"]
mod nginx;
#[path = "http/pages.rs"]
mod pages;
#[path = "common/serve.rs"]
mod serve;

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use keyledger::{Actor, ApiKeyLayer, KeyStore, NewKey};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tower_layer::Layer;
use tower_service::Service;

use serve::{runtime, serve_keyledger};

/// Keys in the store; the clients use the first `CONNECTIONS` of them, one per connection.
const KEYS: usize = 10_000;

struct Mode {
    name: &'static str,
    connections: usize,
    rounds: usize,
    warmup: Duration,
    per_run: Duration,
    /// `--only NAME`: run only that comparison.
    only: Option<String>,
    /// `--page-keys N`: the keys in the store of `keys_page`.
    page_keys: usize,
}

impl Mode {
    fn from_args() -> Mode {
        let args: Vec<String> = std::env::args().collect();
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .map(|v| {
                    v.parse::<u64>()
                        .unwrap_or_else(|_| panic!("{flag} takes a number"))
                })
        };
        let mut mode = if args.iter().any(|a| a == "--quick") {
            Mode {
                name: "quick",
                connections: 32,
                rounds: 3,
                warmup: Duration::from_millis(300),
                per_run: Duration::from_millis(700),
                only: None,
                page_keys: 1_000_000,
            }
        } else {
            Mode {
                name: "full",
                connections: 32,
                rounds: 9,
                warmup: Duration::from_secs(1),
                per_run: Duration::from_secs(2),
                only: None,
                page_keys: 1_000_000,
            }
        };
        if let Some(n) = value("--connections") {
            mode.connections = usize::try_from(n).unwrap().clamp(1, KEYS);
        }
        mode.only = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .cloned();
        if let Some(n) = value("--page-keys") {
            mode.page_keys = usize::try_from(n).unwrap().max(1_000);
        }
        if let Some(n) = value("--rounds") {
            mode.rounds = usize::try_from(n).unwrap().max(1);
        }
        mode
    }
}

/// One comparison in the report: its figures, and the ratios it adds to `ratios`.
struct Comparison {
    name: &'static str,
    figures: Value,
    ratios: Vec<(&'static str, f64)>,
}

fn main() {
    let mode = Mode::from_args();
    let started = Instant::now();
    let comparisons = comparisons(&mode);

    let mut ratios = serde_json::Map::new();
    let mut report = json!({
        "mode": mode.name,
        "machine": common::machine(),
        "settings": {
            "connections": mode.connections,
            "rounds": mode.rounds,
            "seconds_per_run": mode.per_run.as_secs_f64(),
            "warmup_seconds": mode.warmup.as_secs_f64(),
            "keys": KEYS,
            "threads": "server (and the upstream app): one tokio worker; load generator: one tokio worker; nginx: one worker process",
            "client": "hyper 1 http1 client connections, keep-alive, closed loop",
        },
    });
    for c in comparisons {
        let Some(c) = c else { continue };
        for (name, x) in &c.ratios {
            ratios.insert((*name).to_owned(), json!(x));
        }
        report[c.name] = c.figures;
    }
    report["ratios"] = Value::Object(ratios);
    report["elapsed_s"] = json!(started.elapsed().as_secs_f64());
    print_table(&report);
    let path = common::write_report("http.json", &report);
    println!("wrote {}", path.display());
}

/// Every comparison this benchmark makes; `None` for one that cannot run here (and says
/// why on standard error).
fn comparisons(mode: &Mode) -> Vec<Option<Comparison>> {
    let wants = |name: &str| mode.only.as_deref().is_none_or(|only| only == name);
    let mut all = Vec::new();
    if wants("layer_vs_bare") {
        all.push(Some(layer_vs_bare(mode)));
    }
    if wants("auth_vs_trivial") {
        all.push(Some(auth_vs_trivial(mode)));
    }
    if wants("limited_auth_vs_plain") {
        all.push(Some(limited_auth_vs_plain(mode)));
    }
    if wants("metrics_on_vs_off") {
        all.push(Some(metrics::metrics_on_vs_off(mode)));
    }
    if wants("nginx_auth_vs_plain") {
        all.push(nginx_auth_vs_plain(mode));
    }
    if wants("auth_under_hoarding") {
        all.push(Some(hoarding::auth_under_hoarding(mode.name == "quick")));
    }
    if wants("keys_page") {
        all.push(Some(pages::keys_page(mode)));
    }
    all
}

/// Loads `paths[0]` and `paths[1]` on `addr` in alternating order, round after round,
/// after a warm-up of each; every answer must be a 200.
fn rounds(
    mode: &Mode,
    client: &Runtime,
    addr: SocketAddr,
    paths: [&'static str; 2],
    secrets: &[String],
) -> [Vec<Run>; 2] {
    rounds_of(
        mode,
        client,
        [(addr, paths[0], secrets), (addr, paths[1], secrets)],
    )
}

/// As [`rounds`], each side with its own server, path and keys.
fn rounds_of(
    mode: &Mode,
    client: &Runtime,
    sides: [(SocketAddr, &'static str, &[String]); 2],
) -> [Vec<Run>; 2] {
    for (addr, path, secrets) in sides {
        let warm = load(client, addr, path, secrets, mode.warmup);
        assert_eq!(warm.failures, 0, "{path} answered something other than 200");
    }
    let mut runs = [Vec::new(), Vec::new()];
    for round in 0..mode.rounds {
        // Alternate which goes first, so neither always runs on a warmer machine.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (addr, path, secrets) = sides[i];
            let run = load(client, addr, path, secrets, mode.per_run);
            assert_eq!(run.failures, 0, "{path} answered something other than 200");
            eprintln!(
                "  round {}/{} {path:>20}: {:>8.0} req/s, p50 {:>6.1} µs, p99 {:>6.1} µs",
                round + 1,
                mode.rounds,
                run.rps,
                run.p50_us,
                run.p99_us
            );
            runs[i].push(run);
        }
    }
    runs
}

/// The median over rounds of `f(measured) / f(baseline)` in the same round.
fn paired(baseline: &[Run], measured: &[Run], f: fn(&Run) -> f64) -> f64 {
    median(baseline.iter().zip(measured).map(|(b, m)| f(m) / f(b)).collect())
}

/// Medians of a route's runs, and every run.
fn summary(runs: &[Run]) -> Value {
    json!({
        "rps": median(runs.iter().map(|r| r.rps).collect()),
        "p50_us": median(runs.iter().map(|r| r.p50_us).collect()),
        "p99_us": median(runs.iter().map(|r| r.p99_us).collect()),
        "requests": runs.iter().map(|r| r.requests).sum::<usize>(),
        "runs": runs.iter().map(Run::json).collect::<Vec<_>>(),
    })
}

/// `/auth` (a key that verifies, from 10,000) against `/healthz` on one `keyledger serve`.
fn auth_vs_trivial(mode: &Mode) -> Comparison {
    let store = KeyStore::builder().open_temporary().unwrap();
    let secrets = fill(&store, None);
    let server = runtime("server");
    let addr = serve_keyledger(&server, Arc::new(store), &[]);
    let client = runtime("client");
    let [trivial, auth] = rounds(
        mode,
        &client,
        addr,
        ["/healthz", "/auth?role=notifier"],
        &secrets[..mode.connections],
    );
    drop(client);
    drop(server);
    Comparison {
        name: "auth_vs_trivial",
        figures: json!({
            "route": "keyledger serve: GET /auth?role=notifier (a key on its whitelist 127.0.0.0/8, 200 with the \
                      X-Keyledger-* headers) against GET /healthz (200 {\"status\":\"ok\",\"last_seq\":N})",
            "trivial": summary(&trivial),
            "auth": summary(&auth),
            "ratio_rule": "median over rounds of auth/trivial in the same round",
        }),
        ratios: vec![
            ("auth_rps_vs_trivial", paired(&trivial, &auth, |r| r.rps)),
            ("auth_p99_vs_trivial", paired(&trivial, &auth, |r| r.p99_us)),
        ],
    }
}

/// `/auth` with keys that hold a rate limit (one no run reaches: every request passes and
/// takes from its key's bucket, and the answer carries the RateLimit headers) against the
/// same route with keys that hold none, on one `keyledger serve`.
fn limited_auth_vs_plain(mode: &Mode) -> Comparison {
    let store = KeyStore::builder().open_temporary().unwrap();
    let plain = fill(&store, None);
    let limited = fill(&store, Some("4000000000/30d"));
    let server = runtime("server");
    let addr = serve_keyledger(&server, Arc::new(store), &[]);
    let client = runtime("client");
    let path = "/auth?role=notifier";
    let n = mode.connections;
    let [plain_runs, limited_runs] = rounds_of(
        mode,
        &client,
        [(addr, path, &plain[..n]), (addr, path, &limited[..n])],
    );
    drop(client);
    drop(server);
    Comparison {
        name: "limited_auth_vs_plain",
        figures: json!({
            "route": "keyledger serve: GET /auth?role=notifier with keys holding the rate limit 4000000000/30d \
                      (never reached; 200 with the RateLimit headers) against keys holding none",
            "plain": summary(&plain_runs),
            "limited": summary(&limited_runs),
            "ratio_rule": "median over rounds of limited/plain in the same round",
        }),
        ratios: vec![
            (
                "limited_auth_rps_vs_plain",
                paired(&plain_runs, &limited_runs, |r| r.rps),
            ),
            (
                "limited_auth_p99_vs_plain",
                paired(&plain_runs, &limited_runs, |r| r.p99_us),
            ),
        ],
    }
}

/// nginx with `auth_request` to `keyledger serve` before an upstream app, against the same
/// nginx proxying to the same app without auth.
fn nginx_auth_vs_plain(mode: &Mode) -> Option<Comparison> {
    if !std::path::Path::new(nginx::NGINX).exists() {
        eprintln!(
            "nginx_auth_vs_plain: skipped, {} is missing (.ci/run installs nginx-light)",
            nginx::NGINX
        );
        return None;
    }
    let store = KeyStore::builder().open_temporary().unwrap();
    let secrets = fill(&store, None);
    let server = runtime("server");
    let keyledger = serve_keyledger(&server, Arc::new(store), &["127.0.0.1/32"]);
    let app = Router::new().fallback(get(handler));
    let upstream = serve(&server, app);
    let dir = tempfile::tempdir().unwrap();
    let proxy = nginx::Nginx::start(dir.path(), keyledger, upstream);
    let client = runtime("client");
    let [plain, auth] = rounds(
        mode,
        &client,
        proxy.addr,
        ["/open/x", "/api/x"],
        &secrets[..mode.connections],
    );
    drop(client);
    drop(proxy);
    drop(server);
    Some(Comparison {
        name: "nginx_auth_vs_plain",
        figures: json!({
            "route": "nginx 1 worker, keep-alive upstreams: GET /api/x (auth_request to keyledger serve's /auth, \
                      then the app) against GET /open/x (the app alone); the app answers a 2-byte body",
            "plain": summary(&plain),
            "auth": summary(&auth),
            "ratio_rule": "median over rounds of auth/plain in the same round; no target",
        }),
        ratios: vec![
            ("nginx_auth_rps_vs_plain", paired(&plain, &auth, |r| r.rps)),
            ("nginx_auth_p99_vs_plain", paired(&plain, &auth, |r| r.p99_us)),
        ],
    })
}

/// The same handler at `/bare` and, behind `ApiKeyLayer`, at `/layer`.
fn layer_vs_bare(mode: &Mode) -> Comparison {
    let store = KeyStore::builder().open_temporary().unwrap();
    let secrets = fill(&store, None);
    let server = runtime("server");
    let auth = ApiKeyLayer::new(Arc::new(store))
        .require_role("notifier")
        .peer_addr_from(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.ip()));
    let app = Router::new()
        .route("/layer", get(handler).route_layer(auth.clone()))
        .route("/bare", get(handler));
    let addr = serve(&server, app);
    let client = runtime("client");

    let cost = in_process_cost(&auth, &secrets[0]);
    let [bare, layer] = rounds(
        mode,
        &client,
        addr,
        ["/bare", "/layer"],
        &secrets[..mode.connections],
    );
    drop(client);
    drop(server);

    let rps_ratio = paired(&bare, &layer, |r| r.rps);
    let p99_ratio = paired(&bare, &layer, |r| r.p99_us);
    Comparison {
        name: "layer_vs_bare",
        figures: json!({
            "route": "GET, handler answers a 2-byte body; /layer requires the role notifier, \
                      client 127.0.0.1 on the key's whitelist 127.0.0.0/8",
            "bare": summary(&bare),
            "layer": summary(&layer),
            "in_process": cost,
            "ratio_rule": "median over rounds of layer/bare in the same round",
        }),
        ratios: vec![("layer_rps_vs_bare", rps_ratio), ("layer_p99_vs_bare", p99_ratio)],
    }
}

async fn handler() -> &'static str {
    "ok"
}

/// The layer's own cost on a passing request, without the network: the same requests
/// through a trivial service, bare and behind the layer (median of rounds, ns per request).
fn in_process_cost(auth: &ApiKeyLayer, secret: &str) -> Value {
    const N: usize = 200_000;
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let request = || {
        let mut r = Request::get("/layer")
            .header("host", "bench")
            .header("x-api-key", secret)
            .body(())
            .unwrap();
        r.extensions_mut().insert(ConnectInfo(peer));
        r
    };
    fn time<S>(service: &mut S, request: &dyn Fn() -> Request<()>) -> f64
    where
        S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
    {
        let mut cx = Context::from_waker(Waker::noop());
        let start = Instant::now();
        for _ in 0..N {
            assert!(service.poll_ready(&mut cx).is_ready());
            let mut future = std::pin::pin!(service.call(request()));
            let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
                panic!("the trivial service answers at once")
            };
            assert_eq!(response.status(), 200);
            black_box(response);
        }
        start.elapsed().as_nanos() as f64 / N as f64
    }
    let mut bare = Trivial;
    let mut layered = auth.layer(Trivial);
    let (mut b, mut l) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        b.push(time(&mut bare, &request));
        l.push(time(&mut layered, &request));
    }
    let (b, l) = (median(b), median(l));
    json!({ "bare_ns": b, "layer_ns": l, "layer_cost_ns": l - b })
}

/// Answers every request at once with an empty 200.
struct Trivial;

impl Service<Request<()>> for Trivial {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(String::new())))
    }
}

/// Fills the store with `KEYS` keys whitelisted for loopback; returns their secrets.
fn fill(store: &KeyStore, rate_limit: Option<&str>) -> Vec<String> {
    let threads = 16;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let admin = Actor::admin(format!("loader-{t}"));
                    (0..KEYS / threads)
                        .map(|i| {
                            let mut new = NewKey::new(format!("bench key {t}-{i}"))
                                .role("notifier")
                                .allow("127.0.0.0/8".parse().unwrap());
                            if let Some(limit) = rate_limit {
                                new = new.rate_limit(limit.parse().unwrap());
                            }
                            store
                                .create_key(&admin, new)
                                .unwrap()
                                .key
                                .expose_secret()
                                .to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// Serves `app` on a free loopback port from `rt`.
fn serve(rt: &Runtime, app: Router) -> SocketAddr {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });
    addr
}

/// What one run of the load generator saw.
struct Run {
    requests: usize,
    failures: usize,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

impl Run {
    fn json(&self) -> Value {
        json!({
            "requests": self.requests,
            "rps": self.rps,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "max_us": self.max_us,
        })
    }
}

/// One keep-alive connection per secret, each in a closed loop on `path` for `time`.
fn load(rt: &Runtime, addr: SocketAddr, path: &'static str, secrets: &[String], time: Duration) -> Run {
    let (latencies, failures, elapsed) = rt.block_on(async {
        let start = Instant::now();
        let deadline = start + time;
        let tasks: Vec<_> = secrets
            .iter()
            .map(|secret| tokio::spawn(connection(addr, path, secret.clone(), deadline)))
            .collect();
        let mut latencies = Vec::new();
        let mut failures = 0;
        for task in tasks {
            let (l, f) = task.await.unwrap();
            latencies.extend(l);
            failures += f;
        }
        (latencies, failures, start.elapsed())
    });
    let mut ns = latencies;
    ns.sort_unstable();
    let pct = |p: f64| {
        ns.get(((ns.len() as f64 - 1.0) * p) as usize)
            .map_or(f64::NAN, |&x| x as f64 / 1e3)
    };
    Run {
        requests: ns.len(),
        failures,
        rps: ns.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: pct(1.0),
    }
}

/// One connection's closed loop: latencies in nanoseconds, and the count of non-200s.
async fn connection(
    addr: SocketAddr,
    path: &'static str,
    secret: String,
    deadline: Instant,
) -> (Vec<u64>, usize) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut failures = 0;
    while Instant::now() < deadline {
        let request = Request::get(path)
            .header("host", "bench")
            .header("x-api-key", &secret)
            .body(Empty::<&'static [u8]>::new())
            .unwrap();
        let sent = Instant::now();
        sender.ready().await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        let ok = response.status() == 200;
        response.into_body().collect().await.unwrap();
        latencies.push(sent.elapsed().as_nanos() as u64);
        failures += usize::from(!ok);
    }
    (latencies, failures)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn print_table(r: &Value) {
    let mc = &r["machine"];
    println!();
    println!(
        "keyledger http: {} mode, {} connections, {} rounds of {} s; {} ({} cores), linux {}",
        r["mode"].as_str().unwrap_or(""),
        r["settings"]["connections"],
        r["settings"]["rounds"],
        r["settings"]["seconds_per_run"],
        mc["cpu"].as_str().unwrap_or("?"),
        mc["cores"],
        mc["kernel"].as_str().unwrap_or("?"),
    );
    let lb = &r["layer_vs_bare"];
    println!(
        "{:<34}  {:>10}  {:>8}  {:>8}",
        "route", "req/s", "p50 µs", "p99 µs"
    );
    let rows = [
        ("axum route, bare", &lb["bare"]),
        ("axum route, ApiKeyLayer", &lb["layer"]),
        ("serve /healthz", &r["auth_vs_trivial"]["trivial"]),
        ("serve /auth", &r["auth_vs_trivial"]["auth"]),
        ("serve /auth, counting nothing", &r["metrics_on_vs_off"]["off"]),
        ("serve /auth, counted and scraped", &r["metrics_on_vs_off"]["on"]),
        ("nginx -> app", &r["nginx_auth_vs_plain"]["plain"]),
        (
            "nginx auth_request -> serve, app",
            &r["nginx_auth_vs_plain"]["auth"],
        ),
    ];
    for (label, x) in rows {
        if x.is_null() {
            continue;
        }
        let f = |k: &str| x[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{label:<34}  {:>10.0}  {:>8.1}  {:>8.1}",
            f("rps"),
            f("p50_us"),
            f("p99_us")
        );
    }
    let h = &r["auth_under_hoarding"];
    for (label, x) in [("defended", &h["defended"]), ("undefended", &h["undefended"])] {
        if x.is_null() {
            continue;
        }
        let f = |k: &str| x[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "/auth under 1,100 hoarded connections, {label}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests, {} failed)",
            f("p50_ms"),
            f("p99_ms"),
            f("max_ms"),
            x["requests"],
            x["failures"]
        );
    }
    let ip = &lb["in_process"];
    if !ip.is_null() {
        println!(
            "the layer's own cost on a pass, in process: {:.0} ns per request ({:.0} ns bare, {:.0} ns layered)",
            ip["layer_cost_ns"].as_f64().unwrap_or(f64::NAN),
            ip["bare_ns"].as_f64().unwrap_or(f64::NAN),
            ip["layer_ns"].as_f64().unwrap_or(f64::NAN),
        );
    }
    println!();
    for (k, x) in r["ratios"].as_object().unwrap() {
        let x = x
            .as_f64()
            .map_or_else(|| "null".to_owned(), |x| format!("{x:.3}"));
        println!("{k:<24}  {x:>6}");
    }
}
