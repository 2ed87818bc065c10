//! Projection snapshots: opening from a snapshot and the log's tail gives exactly what a
//! full replay gives; a snapshot that does not fit the log is ignored.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use keyledger::{Actor, Integrity, KeyStore, NewKey, parse_net};

type State = (Vec<keyledger::KeyView>, Vec<keyledger::AuditEntry>);

fn write_history(dir: &Path, every: u64, creates: usize) -> Vec<String> {
    let store = KeyStore::builder().snapshot_every(every).open(dir).unwrap();
    let admin = Actor::admin("alice");
    let mut secrets = Vec::new();
    for i in 0..creates {
        let mut new = NewKey::new(format!("k{i}")).role("bot");
        if i % 5 == 0 {
            new = new.rate_limit("1000/1m".parse().unwrap());
        }
        let k = store.create_key(&admin, new).unwrap();
        if i % 7 == 0 {
            let limits = ["50/1s", "1000/1h"].map(|l| l.parse().unwrap());
            store.set_rate_limits(&admin, k.id, limits).unwrap();
        }
        if i % 10 == 0 {
            store.set_rate_limits(&admin, k.id, []).unwrap();
        }
        if i % 3 == 0 {
            store
                .whitelist_ip(&admin, k.id, [parse_net("10.0.0.0/8").unwrap()])
                .unwrap();
        }
        if i % 4 == 0 {
            store.delete_key(&admin, k.id).unwrap();
        }
        secrets.push(k.key.expose_secret().to_owned());
    }
    secrets
}

fn full_replay(dir: &Path) -> State {
    let store = KeyStore::builder().snapshot_every(0).open(dir).unwrap();
    assert!(!store.opened_from_snapshot());
    (store.all_keys(), store.audit())
}

fn open_with_snapshots(dir: &Path) -> (KeyStore, State) {
    let store = KeyStore::builder().snapshot_every(10).open(dir).unwrap();
    let state = (store.all_keys(), store.audit());
    (store, state)
}

#[test]
fn opening_from_a_snapshot_and_the_tail_equals_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = write_history(dir.path(), 10, 40);
    assert!(dir.path().join("snapshot").exists());
    let expected = full_replay(dir.path());
    let (store, state) = open_with_snapshots(dir.path());
    assert!(store.opened_from_snapshot());
    assert_eq!(state, expected);
    // The rebuilt indexes answer verify exactly as the replayed ones do.
    for (i, s) in secrets.iter().enumerate() {
        let from = if i % 3 == 0 { "10.1.2.3" } else { "192.0.2.1" };
        assert_eq!(
            store.verify(s, from.parse().unwrap()).is_ok(),
            i % 4 != 0,
            "key {i}"
        );
    }
    // And it goes on appending after the snapshot's tail.
    store
        .create_key(&Actor::admin("bob"), NewKey::new("after").role("bot"))
        .unwrap();
    assert_eq!(store.audit().last().unwrap().seq, expected.1.len() as u64 + 1);
}

#[test]
fn a_damaged_snapshot_is_ignored_and_the_log_replayed() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path(), 10, 30);
    let path = dir.path().join("snapshot");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let expected = full_replay(dir.path());
    let (store, state) = open_with_snapshots(dir.path());
    assert!(!store.opened_from_snapshot());
    assert_eq!(state, expected);
}

#[test]
fn a_snapshot_from_another_store_is_ignored() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_history(a.path(), 10, 30);
    write_history(b.path(), 10, 30);
    std::fs::copy(b.path().join("snapshot"), a.path().join("snapshot")).unwrap();
    let expected = full_replay(a.path());
    let (store, state) = open_with_snapshots(a.path());
    assert!(
        !store.opened_from_snapshot(),
        "the chain hashes differ, so the snapshot must not be used"
    );
    assert_eq!(state, expected);
}

#[test]
fn a_truncated_snapshot_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path(), 10, 30);
    let path = dir.path().join("snapshot");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let expected = full_replay(dir.path());
    let (store, state) = open_with_snapshots(dir.path());
    assert!(!store.opened_from_snapshot());
    assert_eq!(state, expected);
}

/// A snapshot is a function of the records alone: one saved by a store that was itself
/// opened from a snapshot (and then freed and reused whitelist slots) is byte for byte the
/// one a full replay would save, so `check`, which compares the two, finds nothing.
#[test]
fn a_snapshot_of_a_store_opened_from_a_snapshot_matches_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path(), 10, 30);
    for round in 0..3 {
        let store = KeyStore::builder().snapshot_every(10).open(dir.path()).unwrap();
        assert!(store.opened_from_snapshot(), "round {round}");
        assert_eq!(store.wait_for_integrity(), Integrity::Verified);
        let admin = Actor::admin("alice");
        for i in 0..12 {
            let k = store
                .create_key(&admin, NewKey::new(format!("r{round}-{i}")).role("bot"))
                .unwrap();
            let net = parse_net(&format!("10.{i}.0.0/16")).unwrap();
            store.whitelist_ip(&admin, k.id, [net]).unwrap();
            if i % 2 == 0 {
                store
                    .unwhitelist_ip_allowing_any_address(&admin, k.id, [net])
                    .unwrap();
            }
        }
        drop(store);
        let report = KeyStore::builder().snapshot_every(10).check(dir.path()).unwrap();
        assert!(report.is_intact(), "round {round}: {report:?}");
    }
}
