//! A fleet host's `/metrics` (`keyledger serve --nats --metrics-listen`), on a real
//! nats-server: the hosts it hears, each one's lag, its staleness state, and the
//! revocations whose wait ended unconfirmed, as its own `/v1/fleet` and the answers say;
//! Debian's `promtool` accepts the exposition with the hosts' labels.

#![allow(clippy::unwrap_used)]

#[path = "support/fleet.rs"]
mod hosts;
#[path = "support/nats.rs"]
mod nats;
#[path = "support/relay.rs"]
mod relay;
#[path = "support/served.rs"]
mod served;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use hosts::{Fleet, eventually};

/// The metrics address host `i` printed after its `listening on` line.
fn metrics_addr(fleet: &Fleet, i: usize) -> SocketAddr {
    let served = fleet.hosts[i].served.as_ref().unwrap();
    let line = served.lines.recv_timeout(Duration::from_secs(10)).unwrap();
    line.strip_prefix("metrics listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap()
}

/// The exposition at `addr`, and its samples by name and labels as written.
fn scrape(addr: SocketAddr) -> (String, HashMap<String, f64>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(answer.get(9..12), Some("200"), "{answer}");
    let text = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect();
    (text, samples)
}

/// Sends a signal to a host's process (`STOP` pauses it, `CONT` resumes it).
fn signal(fleet: &Fleet, i: usize, sig: &str) {
    let pid = fleet.hosts[i].served.as_ref().unwrap().child.id().to_string();
    assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
}

#[test]
fn a_fleet_hosts_metrics_name_its_hosts_their_lag_and_unconfirmed_revocations() {
    let mut fleet = Fleet::start(
        &["a", "b"],
        &["--confirm-timeout", "300ms", "--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = metrics_addr(&fleet, 0);
    let (id, _) = fleet.create(0, "bot");
    fleet.converged(2);
    eventually(20, "a hears b at record 2", || {
        let (_, got) = scrape(metrics);
        got.get("keyledger_fleet_host_lag_records{host=\"b\"}") == Some(&0.0)
    });
    let (text, got) = scrape(metrics);
    assert_eq!(got["keyledger_fleet_host_lag_records{host=\"a\"}"], 0.0);
    assert_eq!(got["keyledger_fleet_live_hosts"], 2.0);
    assert_eq!(got["keyledger_fleet_stale_seconds"], 0.0);
    assert_eq!(got["keyledger_fleet_rejecting"], 0.0);
    assert_eq!(got["keyledger_fleet_halted"], 0.0);
    assert_eq!(got["keyledger_fleet_healthy"], 1.0);
    assert_eq!(got["keyledger_fleet_unconfirmed_revocations_total"], 0.0);
    assert_eq!(got["keyledger_log_records"], 2.0);

    // b paused: the delete's wait ends without it, and a counts that.
    signal(&fleet, 1, "-STOP");
    let answer = fleet.call(0, "DELETE", &format!("/v1/keys/{id}"), None);
    let (_, paused) = scrape(metrics);
    signal(&fleet, 1, "-CONT");
    assert_eq!(answer.json()["unconfirmed"], json!(["b"]), "{answer:?}");
    assert_eq!(paused["keyledger_fleet_unconfirmed_revocations_total"], 1.0);
    assert_eq!(paused["keyledger_fleet_host_lag_records{host=\"b\"}"], 1.0);
    assert_eq!(paused["keyledger_log_records"], 3.0);
    eventually(20, "b catches up", || {
        let (_, got) = scrape(metrics);
        got.get("keyledger_fleet_host_lag_records{host=\"b\"}") == Some(&0.0)
    });

    let check = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("/usr/bin/promtool: {e}: test.sh installs it with `apt-get install prometheus`")
        });
    check.stdin.as_ref().unwrap().write_all(text.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {checked:?}"
    );
    assert_eq!(got["keyledger_fleet_served_commands_total"], 0.0);
    assert_eq!(got["keyledger_fleet_forwarded_commands_total"], 0.0);
    assert_eq!(got["keyledger_fleet_forward_fallbacks_total"], 0.0);
    assert_eq!(got["keyledger_fleet_refused_write_requests_total"], 0.0);
    // A create through b goes to a, the writer (the smaller id): a counts it served.
    fleet.create(1, "bot");
    eventually(20, "a serves b's create", || {
        let (_, got) = scrape(metrics);
        got.get("keyledger_fleet_served_commands_total") == Some(&1.0)
    });
    fleet.stop_and_compare();
}
