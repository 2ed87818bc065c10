//! Forwarded writes against a real nats-server: every host sends its batches to the
//! fleet's writer (the live host with the smallest id), a key made through any host
//! verifies there at once, the writer killed with SIGKILL under load loses no acknowledged
//! write, and requests on the writer's subject from a plain NATS client (garbage, a
//! captured request sent again) are refused and change nothing.

#![allow(clippy::unwrap_used)]

#[path = "support/fleet.rs"]
mod hosts;
#[path = "support/nats.rs"]
mod nats;
#[path = "support/relay.rs"]
mod relay;
#[path = "support/served.rs"]
mod served;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hosts::{Fleet, create_key, eventually, http};
use serde_json::Value;

fn writes(fleet: &Fleet, i: usize) -> Value {
    fleet.fleet_status(i)["writes"].clone()
}

#[test]
fn writes_through_every_host_go_to_the_writer_and_verify_there_at_once() {
    let mut fleet = Fleet::start(&["a", "b", "c"], &[]);
    eventually(30, "b and c forward to a", || {
        writes(&fleet, 1)["writer"] == "a" && writes(&fleet, 2)["writer"] == "a"
    });
    assert_eq!(writes(&fleet, 0)["writer"], "a", "a writes its own");
    let mut made = Vec::new();
    for round in 0..5 {
        for i in [1, 2] {
            let (id, secret) = fleet.create(i, &format!("via {i} {round}"));
            // Read your writes: the host that answered has applied the record.
            assert_eq!(fleet.auth(i, &secret), 200, "a key made through host {i}");
            made.push((id, secret));
        }
    }
    let (b, c, a) = (writes(&fleet, 1), writes(&fleet, 2), writes(&fleet, 0));
    assert_eq!(b["forwarded"], 5, "{b}");
    assert_eq!(c["forwarded"], 5, "{c}");
    assert_eq!(a["served"], 10, "{a}");
    assert_eq!(b["fallbacks"], 0, "{b}");
    // A delete through a follower: rejected there at once, and everywhere.
    let (id, secret) = &made[0];
    let answer = fleet.call(2, "DELETE", &format!("/v1/keys/{id}"), None);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(fleet.auth(2, secret), 401);
    // Deleting it again through the other follower: the writer refuses it, the follower
    // decides it again itself against the same state and answers why.
    let again = fleet.call(1, "DELETE", &format!("/v1/keys/{id}"), None);
    assert_eq!(again.status, 404, "{}", again.body);
    for i in 0..3 {
        for (_, secret) in &made[1..] {
            assert_eq!(fleet.auth(i, secret), 200);
        }
        assert_eq!(fleet.auth(i, secret), 401);
    }
    let trail = fleet.stop_and_compare();
    assert!(!trail.is_empty());
}

#[test]
fn the_writer_killed_under_load_loses_no_acknowledged_write() {
    let mut fleet = Fleet::start(&["a", "b", "c"], &[]);
    eventually(30, "b and c forward to a", || {
        writes(&fleet, 1)["writer"] == "a" && writes(&fleet, 2)["writer"] == "a"
    });
    let (addr_b, addr_c, root) = (fleet.addr(1), fleet.addr(2), fleet.root.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(Instant, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = [addr_b, addr_c, addr_b, addr_c]
        .into_iter()
        .enumerate()
        .map(|(w, addr)| {
            let (stop, acked, failed, root) = (
                Arc::clone(&stop),
                Arc::clone(&acked),
                Arc::clone(&failed),
                root.clone(),
            );
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = serde_json::json!({ "name": format!("w{w}-{n}"), "roles": ["bot"] });
                    match http(addr, "POST", "/v1/keys", Some(&root), Some(&body)) {
                        Some(a) if a.status == 201 => {
                            let secret = a.json()["key"].as_str().unwrap().to_owned();
                            acked.lock().unwrap().push((Instant::now(), secret));
                        }
                        Some(a) => failed.lock().unwrap().push(format!("{} {}", a.status, a.body)),
                        None => failed.lock().unwrap().push("no answer".to_owned()),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let before = acked.lock().unwrap().len();
    let mut writer = fleet.hosts[0].served.take().unwrap();
    writer.child.kill().unwrap();
    writer.child.wait().unwrap();
    let killed = Instant::now();
    drop(writer);
    // The others go on writing: first each by itself, then through b, the new writer.
    eventually(30, "c forwards to b", || writes(&fleet, 2)["writer"] == "b");
    // A request in flight when the writer died waits out its timeout (--nats-timeout).
    eventually(30, "writes acknowledged after the kill", || {
        acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at > killed)
            .count()
            >= 50
    });
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let after_kill = acked.iter().filter(|(at, _)| *at > killed).count();
    let longest_pause = acked
        .windows(2)
        .map(|w| w[1].0.saturating_duration_since(w[0].0))
        .max()
        .unwrap_or_default();
    let failed = failed.lock().unwrap().clone();
    eprintln!(
        "acknowledged {} ({before} before the kill, {after_kill} after), failed {}: {:?}; longest pause {longest_pause:?}",
        acked.len(),
        failed.len(),
        failed.iter().take(3).collect::<Vec<_>>()
    );
    assert!(before > 0 && after_kill > 0, "writes before and after the kill");
    // A failure says the write may be lost, never anything else.
    for f in &failed {
        assert!(f.starts_with("503"), "{f}");
    }
    let (b, c) = (writes(&fleet, 1), writes(&fleet, 2));
    assert!(c["forwarded"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(b["writer"], "b", "{b}");
    for (_, secret) in &acked {
        assert_eq!(fleet.auth(1, secret), 200);
        assert_eq!(fleet.auth(2, secret), 200);
    }
    // The killed writer comes back, catches up, and every log is the same bytes.
    fleet.start_host(0);
    let seq = fleet.last_seq(1);
    fleet.converged(seq);
    for (_, secret) in acked.iter().step_by(7) {
        assert_eq!(fleet.auth(0, secret), 200);
    }
    fleet.stop_and_compare();
}

/// Runs `f` with a plain NATS client on `url`.
fn as_client<T>(url: &str, f: impl AsyncFnOnce(async_nats::Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { f(async_nats::connect(url).await.unwrap()).await })
}

#[test]
fn garbage_and_replayed_requests_on_the_writers_subject_change_nothing() {
    let fleet = Fleet::start(&["a", "b"], &[]);
    eventually(30, "b forwards to a", || writes(&fleet, 1)["writer"] == "a");
    let subject = "keyledger.keyledger.write.a";
    // Listen on the writer's subject as any client may, while b forwards a creation.
    let url = fleet.url();
    let (tx, captured) = std::sync::mpsc::channel();
    let listener = std::thread::spawn(move || {
        as_client(&url, async |client| {
            let mut requests = client.subscribe(subject).await.unwrap();
            let mut answers = client.subscribe("keyledger.keyledger.answer.b").await.unwrap();
            client.flush().await.unwrap();
            tx.send(Vec::new()).unwrap();
            let request = requests.next().await.unwrap();
            tx.send(request.payload.to_vec()).unwrap();
            let answer = answers.next().await.unwrap();
            tx.send(answer.payload.to_vec()).unwrap();
        });
    });
    captured.recv_timeout(Duration::from_secs(10)).unwrap();
    let (_, secret) = create_key(fleet.addr(1), &fleet.root, "captured");
    let request = captured.recv_timeout(Duration::from_secs(10)).unwrap();
    let answer = captured.recv_timeout(Duration::from_secs(10)).unwrap();
    listener.join().unwrap();
    assert!(!request.is_empty() && !answer.is_empty());
    let seq = fleet.last_seq(0);
    let url = fleet.url();
    let answers = as_client(&url, async |client| {
        let mut answers = Vec::new();
        for bytes in [request.clone(), b"not a request".to_vec(), {
            let mut flipped = request.clone();
            let mid = flipped.len() / 2;
            flipped[mid] ^= 0x40;
            flipped
        }] {
            let asked = async_nats::Request::new()
                .payload(bytes.into())
                .timeout(Some(Duration::from_millis(500)));
            answers.push(client.send_request(subject, asked).await.is_ok());
        }
        answers
    });
    assert_eq!(answers, [false, false, false], "nothing is answered");
    let a = writes(&fleet, 0);
    assert_eq!(a["refused_requests"], 3, "{a}");
    assert_eq!(a["served"], 1, "only b's own request was taken: {a}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fleet.last_seq(0), seq, "no record was written");
    assert_eq!(fleet.last_seq(1), seq);
    assert_eq!(fleet.auth(0, &secret), 200);

    // The captured answer, and junk, on b's answers subject, while b forwards: dropped,
    // and b's own writes are answered as before.
    let url = fleet.url();
    let addr = fleet.addr(1);
    let root = fleet.root.clone();
    let writer = std::thread::spawn(move || {
        (0..20)
            .map(|n| create_key(addr, &root, &format!("after {n}")).1)
            .collect::<Vec<_>>()
    });
    as_client(&url, async |client| {
        for _ in 0..50 {
            for bytes in [answer.clone(), b"junk".to_vec()] {
                client
                    .publish("keyledger.keyledger.answer.b", bytes.into())
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        client.flush().await.unwrap();
    });
    for secret in writer.join().unwrap() {
        assert_eq!(fleet.auth(1, &secret), 200);
    }
    let b = writes(&fleet, 1);
    assert_eq!(b["forwarded"], 21, "{b}");
    assert_eq!(b["fallbacks"], 0, "{b}");
}

#[test]
fn a_host_told_not_to_forward_appends_its_own_writes() {
    let fleet = Fleet::start_each(&[
        ("a", hosts::FAST, false),
        (
            "b",
            &[
                "--heartbeat",
                "100ms",
                "--lease",
                "1s",
                "--margin",
                "300ms",
                "--no-forward-writes",
            ],
            false,
        ),
    ]);
    eventually(30, "a hears b", || {
        fleet.fleet_status(0)["hosts"]
            .as_array()
            .is_some_and(|h| h.len() == 2)
    });
    let (_, secret) = fleet.create(1, "appended by b");
    assert_eq!(fleet.auth(1, &secret), 200);
    let b = writes(&fleet, 1);
    assert_eq!(b["writer"], "b", "{b}");
    assert_eq!(b["forwarded"], 0, "{b}");
    assert_eq!(writes(&fleet, 0)["served"], 0);
    eventually(10, "a applies it", || fleet.auth(0, &secret) == 200);
}
