//! `/auth` for a good key while one client hoards 1,100 connections (slowloris: part of a
//! request's headers, never the rest, reconnecting 20 ms after the server closes one), asked
//! as nginx asks it when its keep-alive pool is empty: a new connection from the trusted
//! proxy's own address, `X-Forwarded-For` naming the client. The same server with its
//! default connection limits (64 per client, a quarter of the slots kept for the proxies),
//! then with the per-client cap and the proxies' share turned off, as before 0.5.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keyledger::{KeyStore, Server, TrustedProxies};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::runtime::Runtime;

const HOARDED: usize = 1_100;
const PROXY: &str = "127.0.0.2";
const HOARDER: &str = "127.0.0.3";
/// A request still unanswered after this counts as this long.
const GIVE_UP: Duration = Duration::from_secs(15);
/// One ask every this long.
const PACE: Duration = Duration::from_millis(100);

async fn connect(from: &str, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))?;
    socket.connect(to).await
}

/// One of the hoarder's connections, held until the server closes it, then opened again
/// after a pause of 20 ms (a real attacker takes a freed slot back as fast as it can).
async fn hoard(to: SocketAddr, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut stream) = connect(HOARDER, to).await {
            let _ = stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: hoarder\r\nX-Slow: ")
                .await;
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    read = stream.read(&mut buf) => match read {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    },
                    () = tokio::time::sleep(Duration::from_millis(200)) => {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One `/auth` on a new connection from the proxy's address; its latency (capped at
/// [`GIVE_UP`]) and whether it was a 200.
async fn ask(to: SocketAddr, secret: &str) -> (Duration, bool) {
    let started = Instant::now();
    let exchange = async {
        let mut stream = connect(PROXY, to).await.ok()?;
        let request = format!(
            "GET /auth HTTP/1.1\r\nHost: bench\r\nx-api-key: {secret}\r\n\
             X-Forwarded-For: 127.0.0.9\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        Some(answer.starts_with(b"HTTP/1.1 200"))
    };
    match tokio::time::timeout(GIVE_UP, exchange).await {
        Ok(Some(ok)) => (started.elapsed(), ok),
        _ => (GIVE_UP, false),
    }
}

/// Asks at a fixed pace (one every [`PACE`], whether or not the last was answered, so a
/// stall counts once for every request it holds up) for `time`, against a server with or
/// without the connection limits, under the hoard.
fn measure(store: &Arc<KeyStore>, secret: &str, defended: bool, time: Duration) -> Value {
    let server = super::runtime("server");
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut keyledger =
        Server::new(Arc::clone(store)).trusted_proxies(TrustedProxies::parse([PROXY]).unwrap());
    if !defended {
        keyledger = keyledger
            .max_connections_per_client(usize::MAX)
            .proxy_connections(0);
    }
    server.spawn(keyledger.run(listener, std::future::pending()));
    let attacker: Runtime = super::runtime("hoarder");
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..HOARDED {
        attacker.spawn(hoard(addr, Arc::clone(&stop)));
    }
    // Every hoarding connection made (or turned away) before the first ask.
    std::thread::sleep(Duration::from_secs(3));
    let client = super::runtime("client");
    let answers = client.block_on(async {
        let mut asks = Vec::new();
        let mut pace = tokio::time::interval(PACE);
        let started = Instant::now();
        while started.elapsed() < time {
            pace.tick().await;
            let secret = secret.to_owned();
            asks.push(tokio::spawn(async move { ask(addr, &secret).await }));
        }
        let mut answers = Vec::new();
        for a in asks {
            answers.push(a.await.unwrap());
        }
        answers
    });
    stop.store(true, Ordering::Relaxed);
    drop(attacker);
    drop(client);
    drop(server);
    let failures = answers.iter().filter(|(_, ok)| !ok).count();
    let mut ms: Vec<f64> = answers.iter().map(|(l, _)| l.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p) as usize];
    json!({
        "requests": ms.len(),
        "failures": failures,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    })
}

/// The comparison: figures with and without the limits.
pub(super) fn auth_under_hoarding(quick: bool) -> super::Comparison {
    let store = Arc::new(KeyStore::builder().open_temporary().unwrap());
    let secret = super::fill(&store, None).swap_remove(0);
    // Two of the server's 10 s read timeouts at least, so that asks meet the hoard both
    // while it holds every slot and while it refills them.
    let time = if quick {
        Duration::from_secs(25)
    } else {
        Duration::from_secs(60)
    };
    let defended = measure(&store, &secret, true, time);
    let open = measure(&store, &secret, false, time);
    let ratio = open["p99_ms"].as_f64().unwrap_or(f64::NAN) / defended["p99_ms"].as_f64().unwrap_or(f64::NAN);
    super::Comparison {
        name: "auth_under_hoarding",
        figures: json!({
            "route": "GET /auth, a good key, each on a new connection from the trusted proxy's address \
                      127.0.0.2 (X-Forwarded-For 127.0.0.9), ten a second whether answered or not, while 127.0.0.3 keeps 1,100 \
                      slowloris connections open (reconnecting 20 ms after each close); default read \
                      timeout (10 s) and max connections (1024)",
            "defended": defended,
            "undefended": open,
            "settings": {"defended": "64 connections per client, 256 kept for the proxy", "undefended": "no per-client cap, none kept"},
        }),
        ratios: vec![("hoarding_p99_undefended_vs_defended", ratio)],
    }
}
