//! A log that proves its history: tampering done straight through sled is named by
//! `check` and refused by `open`; a keyed chain resists a forged history; a torn tail is
//! refused on open and removed by `repair`, and only a torn tail.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use keyledger::{Actor, ChainKey, Error, KeyStore, NewKey, Problem, ProblemKind};

const RECORDS: u64 = 6;

/// A store with six records: five creates and a delete.
fn store_with_history(dir: &Path, builder: keyledger::Builder) {
    let store = builder.open(dir).unwrap();
    let alice = Actor::admin("alice");
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(
            store
                .create_key(&alice, NewKey::new(format!("key-{i}")).role("bot"))
                .unwrap()
                .id,
        );
    }
    store.delete_key(&Actor::super_admin("root"), ids[0]).unwrap();
    assert_eq!(store.last_seq(), RECORDS);
}

/// The store's raw sled log tree, to tamper with.
fn with_raw_log(dir: &Path, f: impl FnOnce(&sled::Tree)) {
    let db = loop {
        match sled::Config::new()
            .path(dir.join("log"))
            .flush_every_ms(None)
            .open()
        {
            Ok(db) => break db,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    };
    let tree = db.open_tree("log").unwrap();
    f(&tree);
    db.flush().unwrap();
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn problems(dir: &Path) -> Vec<(u64, ProblemKind)> {
    let report = KeyStore::builder().check(dir).unwrap();
    assert_eq!(report.is_intact(), report.problems.is_empty());
    report
        .problems
        .iter()
        .map(|Problem { seq, kind, .. }| (*seq, *kind))
        .collect()
}

fn tampered(tamper: impl FnOnce(&sled::Tree)) -> (tempfile::TempDir, Vec<(u64, ProblemKind)>) {
    let dir = tempfile::tempdir().unwrap();
    store_with_history(dir.path(), KeyStore::builder());
    assert_eq!(problems(dir.path()), []);
    with_raw_log(dir.path(), tamper);
    let found = problems(dir.path());
    assert!(
        matches!(KeyStore::open(dir.path()), Err(Error::Corrupt { .. })),
        "a tampered log must not open"
    );
    (dir, found)
}

#[test]
fn an_edited_record_is_named() {
    let (_d, found) = tampered(|log| {
        let mut v = log.get(key(3)).unwrap().unwrap().to_vec();
        let at = v.windows(5).position(|w| w == b"key-3").unwrap();
        v[at + 4] = b'9';
        log.insert(key(3), v).unwrap();
    });
    assert_eq!(found, [(3, ProblemKind::Edited)]);
}

#[test]
fn an_edited_last_record_is_named_through_the_anchor() {
    let (_d, found) = tampered(|log| {
        let mut v = log.get(key(RECORDS)).unwrap().unwrap().to_vec();
        let actor = v.windows(4).position(|w| w == b"root").unwrap();
        v[actor..actor + 4].copy_from_slice(b"toor");
        log.insert(key(RECORDS), v).unwrap();
    });
    assert_eq!(found, [(RECORDS, ProblemKind::Edited)]);
}

#[test]
fn a_removed_record_is_named() {
    let (_d, found) = tampered(|log| {
        log.remove(key(3)).unwrap();
    });
    assert_eq!(found[0], (3, ProblemKind::Removed));
}

#[test]
fn a_removed_record_is_named_even_when_the_rest_are_renumbered() {
    let (_d, found) = tampered(|log| {
        for seq in 3..RECORDS {
            let next = log.get(key(seq + 1)).unwrap().unwrap();
            log.insert(key(seq), next).unwrap();
        }
        log.remove(key(RECORDS)).unwrap();
    });
    assert_eq!(found, [(3, ProblemKind::Removed)]);
}

#[test]
fn an_inserted_record_is_named() {
    // The forger takes a well-formed record 3 from another store of theirs.
    let other = tempfile::tempdir().unwrap();
    store_with_history(other.path(), KeyStore::builder());
    let mut forged = None;
    with_raw_log(other.path(), |log| forged = log.get(key(3)).unwrap());
    let forged = forged.unwrap();
    let (_d, found) = tampered(|log| {
        for seq in (3..=RECORDS).rev() {
            let v = log.get(key(seq)).unwrap().unwrap();
            log.insert(key(seq + 1), v).unwrap();
        }
        log.insert(key(3), forged).unwrap();
    });
    assert_eq!(found, [(3, ProblemKind::Inserted)]);
}

#[test]
fn reordered_records_are_named() {
    let (_d, found) = tampered(|log| {
        let (a, b) = (
            log.get(key(3)).unwrap().unwrap(),
            log.get(key(4)).unwrap().unwrap(),
        );
        log.insert(key(3), b).unwrap();
        log.insert(key(4), a).unwrap();
    });
    assert_eq!(found, [(3, ProblemKind::Reordered)]);
}

#[test]
fn an_undecodable_record_is_named() {
    let (_d, found) = tampered(|log| {
        log.insert(key(2), &b"\x01\x00garbage"[..]).unwrap();
    });
    assert_eq!(found, [(2, ProblemKind::Undecodable)]);
}

#[test]
fn a_lost_tail_is_named() {
    let (_d, found) = tampered(|log| {
        log.remove(key(RECORDS)).unwrap();
        log.remove(key(RECORDS - 1)).unwrap();
    });
    assert_eq!(found, [(RECORDS - 1, ProblemKind::Removed)]);
}

#[test]
fn a_forged_history_passes_the_public_check_but_not_the_keyed_one() {
    let chain_key = || ChainKey::from_hex(&"ab".repeat(32)).unwrap();
    let real = tempfile::tempdir().unwrap();
    store_with_history(real.path(), KeyStore::builder().chain_key(chain_key()));
    assert!(
        KeyStore::builder()
            .chain_key(chain_key())
            .check(real.path())
            .unwrap()
            .is_intact()
    );

    // The forger can write the database but lacks the key: they build the history they
    // want with keyledger itself and put it in place of the real one.
    let forged = tempfile::tempdir().unwrap();
    {
        let store = KeyStore::open(forged.path()).unwrap();
        store
            .create_key(&Actor::admin("mallory"), NewKey::new("backdoor").role("admin"))
            .unwrap();
    }
    std::fs::remove_dir_all(real.path().join("log")).unwrap();
    copy_dir(&forged.path().join("log"), &real.path().join("log"));

    assert!(KeyStore::builder().check(real.path()).unwrap().is_intact());
    let keyed = KeyStore::builder()
        .chain_key(chain_key())
        .check(real.path())
        .unwrap();
    assert!(!keyed.is_intact());
    assert!(matches!(
        KeyStore::builder().chain_key(chain_key()).open(real.path()),
        Err(Error::InvalidInput {
            field: "chain key",
            ..
        })
    ));
}

#[test]
fn a_history_rechained_without_the_key_fails_the_keyed_check_at_its_first_record() {
    let chain_key = || ChainKey::from_hex(&"cd".repeat(32)).unwrap();
    let real = tempfile::tempdir().unwrap();
    store_with_history(real.path(), KeyStore::builder().chain_key(chain_key()));
    let forged = tempfile::tempdir().unwrap();
    store_with_history(forged.path(), KeyStore::builder());
    // Same shape of history, public chain, written into the keyed store's log tree.
    let mut entries = Vec::new();
    with_raw_log(forged.path(), |log| {
        entries = log.iter().map(|kv| kv.unwrap()).collect()
    });
    with_raw_log(real.path(), |log| {
        log.clear().unwrap();
        for (k, v) in entries {
            log.insert(k, v).unwrap();
        }
    });
    let report = KeyStore::builder()
        .chain_key(chain_key())
        .check(real.path())
        .unwrap();
    assert_eq!(report.problems[0].seq, 1);
    assert_eq!(report.problems[0].kind, ProblemKind::Edited);
    assert!(matches!(
        KeyStore::builder().chain_key(chain_key()).open(real.path()),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn a_keyed_store_needs_its_key() {
    let dir = tempfile::tempdir().unwrap();
    store_with_history(
        dir.path(),
        KeyStore::builder().chain_key(ChainKey::from_hex(&"01".repeat(32)).unwrap()),
    );
    assert!(matches!(
        KeyStore::open(dir.path()),
        Err(Error::InvalidInput {
            field: "chain key",
            ..
        })
    ));
    let wrong = KeyStore::builder().chain_key(ChainKey::from_hex(&"02".repeat(32)).unwrap());
    assert!(matches!(
        wrong.open(dir.path()),
        Err(Error::InvalidInput {
            field: "chain key",
            ..
        })
    ));
    assert!(format!("{:?}", ChainKey::from_hex(&"01".repeat(32)).unwrap()).contains("redacted"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

mod torn_tail {
    use super::*;

    #[test]
    fn an_unacknowledged_tail_blocks_open_until_repaired() {
        let dir = tempfile::tempdir().unwrap();
        store_with_history(dir.path(), KeyStore::builder());
        with_raw_log(dir.path(), |log| {
            log.insert(key(RECORDS + 1), &b"\x01\x00torn"[..]).unwrap();
        });
        match KeyStore::open(dir.path()) {
            Err(Error::Corrupt { seq, .. }) => assert_eq!(seq, RECORDS + 1),
            other => panic!("{other:?}"),
        }
        let report = KeyStore::builder().repair(dir.path()).unwrap();
        assert_eq!(report.removed, [RECORDS + 1]);
        assert_eq!(report.last_seq, RECORDS);
        let store = KeyStore::open(dir.path()).unwrap();
        assert_eq!(store.last_seq(), RECORDS);
        drop(store);
        assert!(KeyStore::builder().check(dir.path()).unwrap().is_intact());
        // Nothing more to repair.
        assert_eq!(
            KeyStore::builder().repair(dir.path()).unwrap().removed,
            Vec::<u64>::new()
        );
    }

    #[test]
    fn an_undecodable_last_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        store_with_history(dir.path(), KeyStore::builder());
        with_raw_log(dir.path(), |log| {
            let v = log.get(key(RECORDS)).unwrap().unwrap();
            log.insert(key(RECORDS), &v[..v.len() / 2]).unwrap();
        });
        assert!(matches!(
            KeyStore::open(dir.path()),
            Err(Error::Corrupt { seq: RECORDS, .. })
        ));
        assert_eq!(KeyStore::builder().repair(dir.path()).unwrap().removed, [RECORDS]);
        assert_eq!(KeyStore::open(dir.path()).unwrap().last_seq(), RECORDS - 1);
    }

    #[test]
    fn damage_inside_the_log_is_refused_by_repair_and_nothing_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        store_with_history(dir.path(), KeyStore::builder());
        with_raw_log(dir.path(), |log| {
            log.insert(key(2), &b"\x01\x00garbage"[..]).unwrap();
        });
        assert!(matches!(
            KeyStore::builder().repair(dir.path()),
            Err(Error::Corrupt { seq: 2, .. })
        ));
        let mut count = 0;
        with_raw_log(dir.path(), |log| count = log.iter().count());
        assert_eq!(count as u64, RECORDS + 1, "six records and the anchor");
    }

    #[test]
    fn check_and_repair_do_not_create_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing-here");
        assert!(matches!(KeyStore::builder().check(&missing), Err(Error::Io(_))));
        assert!(matches!(KeyStore::builder().repair(&missing), Err(Error::Io(_))));
        assert!(!missing.exists());
    }
}

#[test]
fn a_foreign_entry_in_the_log_tree_is_named_and_blocks_open() {
    let (_d, found) = tampered(|log| {
        log.insert(b"abc", &b"not a record"[..]).unwrap();
    });
    assert_eq!(found, [(0, ProblemKind::Inserted)]);
}
