//! What the library logs through `tracing`, seen by a subscriber of the test's own: a
//! snapshot's start and save (with its size and time), and nothing at all for verifies,
//! good or bad, nor anything shaped like a key.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyledger::{Actor, KeyStore, NewKey};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Every event, as `target: message field=value ...`.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<String>>>);

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl Subscriber for Collected {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line(format!("{}:", event.metadata().target()));
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Collected {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[test]
fn a_snapshot_is_logged_with_its_size_and_a_verify_logs_nothing() {
    let collected = Collected::default();
    tracing::subscriber::set_global_default(collected.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::builder().snapshot_every(4).open(dir.path()).unwrap();
    let root = Actor::super_admin("root");
    let mut secrets = Vec::new();
    for i in 0..5 {
        let created = store
            .create_key(&root, NewKey::new(format!("bot {i}")).role("bot"))
            .unwrap();
        secrets.push(created.key.expose_secret().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !collected.lines().iter().any(|l| l.contains("snapshot saved")) {
        assert!(Instant::now() < deadline, "{:?}", collected.lines());
        std::thread::sleep(Duration::from_millis(10));
    }
    let lines = collected.lines();
    let started = lines.iter().find(|l| l.contains("snapshot started")).unwrap();
    assert!(started.starts_with("keyledger::snapshot:"), "{started}");
    let saved = lines.iter().find(|l| l.contains("snapshot saved")).unwrap();
    assert!(
        saved.contains(" seq=4") && saved.contains(" bytes=") && saved.contains(" elapsed_ms="),
        "{saved}"
    );

    let before = collected.lines().len();
    let here: IpAddr = "127.0.0.1".parse().unwrap();
    for secret in &secrets {
        assert!(store.verify(secret, here).is_ok());
        let mut typo = secret.clone().into_bytes();
        typo[10] ^= 1;
        assert!(store.verify(std::str::from_utf8(&typo).unwrap(), here).is_err());
    }
    assert_eq!(collected.lines().len(), before, "{:?}", collected.lines());
    drop(store);
    for line in collected.lines() {
        assert!(!line.contains(keyledger::KEY_PREFIX), "{line}");
        assert!(secrets.iter().all(|s| !line.contains(&s[4..36])), "{line}");
    }
}
