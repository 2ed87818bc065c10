//! Continuous creates and deletes through fleet hosts while a test breaks the cluster
//! under them (`tests/fleet_cluster.rs`, `tests/fleet_partition.rs`), and what every
//! acknowledgement promised, checked afterwards. Needs `fleet.rs` (as `hosts`) and
//! `cluster.rs` beside it.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::Cluster;
use crate::hosts::{self, eventually, http};

/// What one write did: when it was sent and answered, and, if it was acknowledged, the
/// key it created or deleted (its id and secret).
pub(crate) struct Write {
    pub(crate) sent: Instant,
    pub(crate) done: Instant,
    pub(crate) create: bool,
    pub(crate) acknowledged: Option<(String, String)>,
    /// Otherwise: the status and error kind (0 and `none`: no answer).
    pub(crate) failed: (u16, String),
}

/// An answer's status and error kind.
fn failure(answer: Option<&hosts::Answer>) -> (u16, String) {
    match answer {
        None => (0, "none".to_owned()),
        Some(a) => {
            let kind = serde_json::from_str::<serde_json::Value>(&a.body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned));
            (a.status, kind.unwrap_or_default())
        }
    }
}

/// Creates keys through the host at `addr`, and deletes every third one it created, one
/// write at a time, until `stop`.
pub(crate) fn churn(addr: SocketAddr, root: &str, host: &str, stop: &AtomicBool) -> Vec<Write> {
    let mut writes = Vec::new();
    let mut live: Vec<(String, String)> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let sent = Instant::now();
        let write = if n.is_multiple_of(3) && !live.is_empty() {
            let (id, secret) = live.remove(0);
            let answer = http(addr, "DELETE", &format!("/v1/keys/{id}"), Some(root), None);
            Write {
                sent,
                done: Instant::now(),
                create: false,
                failed: failure(answer.as_ref()),
                acknowledged: answer.filter(|a| a.status == 200).map(|_| (id, secret)),
            }
        } else {
            let body = json!({"name": format!("{host}-{n}"), "roles": ["bot"]});
            let answer = http(addr, "POST", "/v1/keys", Some(root), Some(&body));
            let failed = failure(answer.as_ref());
            let created = answer.filter(|a| a.status == 201).map(|a| {
                let key = a.json();
                (
                    key["id"].as_str().unwrap().to_owned(),
                    key["key"].as_str().unwrap().to_owned(),
                )
            });
            live.extend(created.clone());
            Write {
                sent,
                done: Instant::now(),
                create: true,
                acknowledged: created,
                failed,
            }
        };
        writes.push(write);
        std::thread::sleep(Duration::from_millis(100));
    }
    writes
}

/// Sets its flag when dropped: the writers stop also when the test fails.
pub(crate) struct StopOnDrop<'a>(pub(crate) &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The longest time between two acknowledged writes answered between `from` and `to`
/// (sorted), counting from `from` and up to `to` where none was.
pub(crate) fn longest_pause(done: &[Instant], from: Instant, to: Instant) -> Duration {
    let inside: Vec<Instant> = done.iter().copied().filter(|t| *t >= from && *t <= to).collect();
    let mut longest = Duration::ZERO;
    let mut last = from;
    for t in inside.iter().chain(std::iter::once(&to)) {
        longest = longest.max(t.saturating_duration_since(last));
        last = *t;
    }
    longest
}

/// When each acknowledged write of `writes` was answered, sorted.
pub(crate) fn acknowledged_at<'a>(writes: impl IntoIterator<Item = &'a Write>) -> Vec<Instant> {
    let mut done: Vec<Instant> = writes
        .into_iter()
        .filter(|w| w.acknowledged.is_some())
        .map(|w| w.done)
        .collect();
    done.sort();
    done
}

/// Waits (at most a minute) until `stream` has a leader and both other replicas are
/// current; returns the leader's index.
pub(crate) fn settled(cluster: &Cluster, stream: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((leader, true)) = cluster.leader(stream) {
            return Cluster::index(&leader).unwrap();
        }
        assert!(Instant::now() < deadline, "{stream} does not settle");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prints how many creates and deletes were acknowledged and failed, and the failures by
/// status and error kind.
pub(crate) fn report(writes: &[Vec<Write>]) {
    let all: Vec<&Write> = writes.iter().flatten().collect();
    let count = |create: bool, acked: bool| {
        all.iter()
            .filter(|w| w.create == create && w.acknowledged.is_some() == acked)
            .count()
    };
    eprintln!(
        "writes: creates {} acknowledged, {} failed; deletes {} acknowledged, {} failed",
        count(true, true),
        count(true, false),
        count(false, true),
        count(false, false)
    );
    let mut kinds: BTreeMap<(u16, &str), usize> = BTreeMap::new();
    for w in all.iter().filter(|w| w.acknowledged.is_none()) {
        *kinds.entry((w.failed.0, w.failed.1.as_str())).or_default() += 1;
    }
    eprintln!("failed writes by status and error: {kinds:?}");
    assert!(
        count(true, true) > 0 && count(false, true) > 0,
        "some creates and deletes were acknowledged"
    );
}

/// Waits until the hosts at `addrs` hold the same log and verify `root`; then every
/// acknowledged create verifies on every host (unless a delete of it was attempted: a
/// failed delete may or may not have landed, and the exports settle that) and no
/// acknowledged delete's key verifies anywhere.
pub(crate) fn check_promises(writes: &[Vec<Write>], addrs: &[SocketAddr], root: &str) {
    let auth =
        |i: usize, secret: &str| http(addrs[i], "GET", "/auth", Some(secret), None).map_or(0, |a| a.status);
    let last_seq = |i: usize| {
        http(addrs[i], "GET", "/healthz", None, None)
            .and_then(|a| a.json()["last_seq"].as_u64())
            .unwrap_or(0)
    };
    eventually(60, "the hosts converge", || {
        let top = last_seq(0);
        (1..addrs.len()).all(|i| last_seq(i) == top) && (0..addrs.len()).all(|i| auth(i, root) == 200)
    });
    let all: Vec<&Write> = writes.iter().flatten().collect();
    let deleted: HashSet<&str> = all
        .iter()
        .filter(|w| !w.create)
        .filter_map(|w| w.acknowledged.as_ref().map(|(id, _)| id.as_str()))
        .collect();
    let attempted: HashSet<String> = writes
        .iter()
        .flat_map(|host| {
            let created: Vec<&(String, String)> = host
                .iter()
                .filter(|w| w.create)
                .filter_map(|w| w.acknowledged.as_ref())
                .collect();
            let deletes = host.iter().filter(|w| !w.create).count();
            created
                .into_iter()
                .take(deletes)
                .map(|(id, _)| id.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    for w in &all {
        let Some((id, secret)) = &w.acknowledged else {
            continue;
        };
        for i in 0..addrs.len() {
            if !w.create || deleted.contains(id.as_str()) {
                assert_ne!(auth(i, secret), 200, "deleted key {id} verifies on host {i}");
            } else if !attempted.contains(id) {
                assert_eq!(
                    auth(i, secret),
                    200,
                    "created key {id} does not verify on host {i}"
                );
            }
        }
    }
}
