//! `GET /auth` on `keyledger serve`'s server, paced: keep-alive connections each sending
//! a request every so often, so that the load generator takes little CPU from what it
//! measures. A request's latency counts from when it was sent, or from when it was due
//! if the answer before on its connection made it late, so a stall counts for every
//! request it holds up.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::AUTH_RATE;
use crate::workload::CLIENT;

/// What the paced `/auth` requests saw.
pub(super) struct AuthRun {
    requests: usize,
    failures: usize,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    max_us: f64,
}

impl AuthRun {
    pub(super) fn json(&self) -> Value {
        json!({
            "requests": self.requests,
            "failures": self.failures,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "max_us": self.max_us,
        })
    }
}

/// One keep-alive connection per secret, together [`AUTH_RATE`] requests a second, for
/// `time`; every answer must be a 200.
pub(super) async fn paced_auth(addr: SocketAddr, secrets: Vec<String>, time: Duration) -> AuthRun {
    let interval = Duration::from_secs_f64(secrets.len() as f64 / AUTH_RATE);
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let count = secrets.len();
    let tasks: Vec<_> = secrets
        .into_iter()
        .enumerate()
        .map(|(c, secret)| {
            let first = start + interval.mul_f64(c as f64 / count as f64);
            tokio::spawn(paced_connection(addr, secret, first, interval, start + time))
        })
        .collect();
    let mut ns = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await.unwrap();
        ns.extend(l);
        failures += f;
    }
    assert_eq!(failures, 0, "/auth answered something other than 200");
    ns.sort_unstable();
    let pct = |p: f64| {
        ns.get(((ns.len() as f64 - 1.0) * p) as usize)
            .map_or(f64::NAN, |&x| x as f64 / 1e3)
    };
    AuthRun {
        requests: ns.len(),
        failures,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: pct(1.0),
    }
}

/// One connection sending a request every `interval` from `first` until `end`: latencies
/// in nanoseconds (from when the request was sent, or from when it was due if the
/// previous answer came after that), and the count of non-200s.
async fn paced_connection(
    addr: SocketAddr,
    secret: String,
    first: tokio::time::Instant,
    interval: Duration,
    end: tokio::time::Instant,
) -> (Vec<u64>, usize) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let forwarded = CLIENT.to_string();
    let mut latencies = Vec::new();
    let mut failures = 0;
    let mut due = first;
    while due < end {
        // Late because of the answer before: that wait is the server's. On time: the
        // timer's own lateness (up to a millisecond) is not.
        let sent = if tokio::time::Instant::now() > due {
            due
        } else {
            tokio::time::sleep_until(due).await;
            tokio::time::Instant::now()
        };
        let request = Request::get("/auth?role=reader")
            .header("host", "bench")
            .header("x-api-key", &secret)
            .header("x-forwarded-for", &forwarded)
            .body(Empty::<&'static [u8]>::new())
            .unwrap();
        sender.ready().await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        let ok = response.status() == 200;
        response.into_body().collect().await.unwrap();
        latencies.push(sent.elapsed().as_nanos() as u64);
        failures += usize::from(!ok);
        due += interval;
    }
    (latencies, failures)
}
