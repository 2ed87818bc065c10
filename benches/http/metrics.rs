//! `metrics_on_vs_off`: `keyledger serve`'s `/auth` on a store that counts every decision
//! (sharded counters and the verify latency histogram), with `/metrics` served on a
//! listener of its own and scraped every second during the runs (Prometheus scrapes every
//! 15 to 60 s: this is the pessimistic side), against the same server on a store opened
//! with `Builder::statistics(false)`, which counts nothing and reads no clock for it, as
//! `keyledger serve` without `--metrics-listen`. Both servers share one runtime; the
//! rounds alternate. Target: `metrics_rps_vs_off` ≥ 0.97.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use keyledger::{KeyStore, Server};
use serde_json::json;
use tokio::runtime::Runtime;

use super::{Comparison, Mode, fill, paired, rounds_of, runtime, summary};

/// `keyledger serve`'s server on `store` and its metrics listener, on free loopback ports
/// of `rt`.
fn serve_with_metrics(rt: &Runtime, store: Arc<KeyStore>) -> (SocketAddr, SocketAddr) {
    let bind = || rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let (listener, metrics) = (bind(), bind());
    let addrs = (listener.local_addr().unwrap(), metrics.local_addr().unwrap());
    let server = Server::new(store);
    rt.spawn(server.metrics().run(metrics, std::future::pending()));
    rt.spawn(server.run(listener, std::future::pending()));
    addrs
}

/// One scrape of `/metrics`; whether it answered 200.
fn scrape(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.get(9..12) == Some("200")
        && answer.contains("keyledger_auth_decisions_total")
}

pub(crate) fn metrics_on_vs_off(mode: &Mode) -> Comparison {
    let counted = KeyStore::builder().open_temporary().unwrap();
    let uncounted = KeyStore::builder().statistics(false).open_temporary().unwrap();
    let on_secrets = fill(&counted, None);
    let off_secrets = fill(&uncounted, None);
    let server = runtime("server");
    let (on, metrics) = serve_with_metrics(&server, Arc::new(counted));
    let (off, _) = serve_with_metrics(&server, Arc::new(uncounted));
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let scraper = {
        let (stop, scrapes) = (Arc::clone(&stop), Arc::clone(&scrapes));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                assert!(scrape(metrics), "/metrics did not answer");
                scrapes.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let client = runtime("client");
    let path = "/auth?role=notifier";
    let n = mode.connections;
    let [off_runs, on_runs] = rounds_of(
        mode,
        &client,
        [(off, path, &off_secrets[..n]), (on, path, &on_secrets[..n])],
    );
    stop.store(true, Ordering::Relaxed);
    scraper.join().unwrap();
    drop(client);
    drop(server);
    Comparison {
        name: "metrics_on_vs_off",
        figures: json!({
            "route": "keyledger serve: GET /auth?role=notifier (200) on a store counting its decisions, with \
                      /metrics on its own listener scraped every second, against a store opened with \
                      statistics(false); one server each, on one runtime",
            "off": summary(&off_runs),
            "on": summary(&on_runs),
            "scrapes": scrapes.load(Ordering::Relaxed),
            "ratio_rule": "median over rounds of on/off in the same round",
        }),
        ratios: vec![
            ("metrics_rps_vs_off", paired(&off_runs, &on_runs, |r| r.rps)),
            ("metrics_p99_vs_off", paired(&off_runs, &on_runs, |r| r.p99_us)),
        ],
    }
}
