//! A log that proves its history: tampering done straight through sled is named by
//! `check` and refused by `open`; a keyed chain resists a forged history and a rolled-back
//! head; a witness catches a whole older copy; what follows the head is refused on open and
//! removed by `repair`, and only that.
//!
//! The attacker here can write the store's directory and knows the documented format
//! (`docs/design.md`), so they rebuild blocks and their checksums; they lack the chain key.
#![allow(clippy::unwrap_used)]

#[path = "support/files.rs"]
mod files;

use files::copy_dir;
use std::path::Path;

use keyledger::{Actor, ChainKey, ChainKeyProblem, Error, KeyStore, NewKey, Problem, ProblemKind};

const RECORDS: u64 = 6;

/// A store with six records: five creates and a delete, one block each.
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

/// A block as `docs/design.md` lays it out: version 2, first sequence number, record
/// count, each record as a `u32` length and its bytes, then blake3 of all of it.
fn block(first: u64, records: &[&[u8]]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&first.to_le_bytes());
    b.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        b.extend_from_slice(&(r.len() as u32).to_le_bytes());
        b.extend_from_slice(r);
    }
    let sum = blake3::hash(&b);
    b.extend_from_slice(sum.as_bytes());
    b
}

/// The records of a well-formed block.
fn unblock(bytes: &[u8]) -> Vec<Vec<u8>> {
    let count = u32::from_le_bytes(bytes[10..14].try_into().unwrap()) as usize;
    let mut rest = &bytes[14..bytes.len() - 32];
    let mut out = Vec::new();
    for _ in 0..count {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    out
}

/// The store's log tree seen record by record (each block here holds one record).
struct Records<'a>(&'a sled::Tree);

impl Records<'_> {
    fn get(&self, seq: u64) -> Vec<u8> {
        let bytes = self.0.get(seq.to_be_bytes()).unwrap().unwrap();
        let mut records = unblock(&bytes);
        assert_eq!(records.len(), 1);
        records.remove(0)
    }

    fn insert(&self, seq: u64, record: impl AsRef<[u8]>) {
        self.0
            .insert(seq.to_be_bytes(), block(seq, &[record.as_ref()]))
            .unwrap();
    }

    fn remove(&self, seq: u64) {
        self.0.remove(seq.to_be_bytes()).unwrap().unwrap();
    }

    fn raw(&self) -> &sled::Tree {
        self.0
    }
}

/// Opens the store's raw sled database, to tamper with.
fn with_raw_db(dir: &Path, f: impl FnOnce(&sled::Db)) {
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
    f(&db);
    db.flush().unwrap();
}

/// Format 1's anchor: version 1, sequence number, chain hash; no seal.
fn unsealed_anchor(seq: u64, hash: &[u8]) -> Vec<u8> {
    let mut a = 1u16.to_le_bytes().to_vec();
    a.extend_from_slice(&seq.to_le_bytes());
    a.extend_from_slice(hash);
    a
}

fn with_raw_log(dir: &Path, f: impl FnOnce(&Records<'_>)) {
    with_raw_db(dir, |db| f(&Records(&db.open_tree("log").unwrap())));
}

fn problems_with(dir: &Path, builder: keyledger::Builder) -> Vec<(u64, ProblemKind)> {
    let report = builder.check(dir).unwrap();
    assert_eq!(report.is_intact(), report.problems.is_empty());
    report
        .problems
        .iter()
        .map(|Problem { seq, kind, .. }| (*seq, *kind))
        .collect()
}

fn problems(dir: &Path) -> Vec<(u64, ProblemKind)> {
    problems_with(dir, KeyStore::builder())
}

fn tampered(tamper: impl FnOnce(&Records<'_>)) -> (tempfile::TempDir, Vec<(u64, ProblemKind)>) {
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
        let mut v = log.get(3);
        let at = v.windows(5).position(|w| w == b"key-3").unwrap();
        v[at + 4] = b'9';
        log.insert(3, v);
    });
    assert_eq!(found, [(3, ProblemKind::Edited)]);
}

#[test]
fn an_edited_last_record_is_named_through_the_head() {
    let (_d, found) = tampered(|log| {
        let mut v = log.get(RECORDS);
        let actor = v.windows(4).position(|w| w == b"root").unwrap();
        v[actor..actor + 4].copy_from_slice(b"toor");
        log.insert(RECORDS, v);
    });
    assert_eq!(found, [(RECORDS, ProblemKind::Edited)]);
}

#[test]
fn a_removed_record_is_named() {
    let (_d, found) = tampered(|log| {
        log.remove(3);
    });
    assert_eq!(found[0], (3, ProblemKind::Removed));
}

#[test]
fn a_removed_record_is_named_even_when_the_rest_are_renumbered() {
    let (_d, found) = tampered(|log| {
        for seq in 3..RECORDS {
            let next = log.get(seq + 1);
            log.insert(seq, next);
        }
        log.remove(RECORDS);
    });
    assert_eq!(found, [(3, ProblemKind::Removed)]);
}

#[test]
fn an_inserted_record_is_named() {
    // The forger takes a well-formed record 3 from another store of theirs.
    let other = tempfile::tempdir().unwrap();
    store_with_history(other.path(), KeyStore::builder());
    let mut forged = Vec::new();
    with_raw_log(other.path(), |log| forged = log.get(3));
    let (_d, found) = tampered(|log| {
        for seq in (3..=RECORDS).rev() {
            let v = log.get(seq);
            log.insert(seq + 1, v);
        }
        log.insert(3, forged);
    });
    assert_eq!(found, [(3, ProblemKind::Inserted)]);
}

#[test]
fn reordered_records_are_named() {
    let (_d, found) = tampered(|log| {
        let (a, b) = (log.get(3), log.get(4));
        log.insert(3, b);
        log.insert(4, a);
    });
    assert_eq!(found, [(3, ProblemKind::Reordered)]);
}

#[test]
fn an_undecodable_record_is_named() {
    let (_d, found) = tampered(|log| {
        log.insert(2, b"\x01\x00garbage");
    });
    assert_eq!(found, [(2, ProblemKind::Undecodable)]);
}

#[test]
fn a_damaged_block_is_named() {
    let (_d, found) = tampered(|log| {
        let mut v = log.raw().get(3u64.to_be_bytes()).unwrap().unwrap().to_vec();
        v[20] ^= 1;
        log.raw().insert(3u64.to_be_bytes(), v).unwrap();
    });
    assert_eq!(found, [(3, ProblemKind::Undecodable)]);
}

#[test]
fn a_lost_tail_is_named() {
    let (_d, found) = tampered(|log| {
        log.remove(RECORDS);
        log.remove(RECORDS - 1);
    });
    assert_eq!(found, [(RECORDS - 1, ProblemKind::Removed)]);
}

#[test]
fn a_forged_history_passes_the_public_check_but_not_the_keyed_one() {
    let chain_key = || ChainKey::from_hex(&"ab".repeat(32)).unwrap();
    let real = tempfile::tempdir().unwrap();
    store_with_history(real.path(), KeyStore::builder().chain_key(chain_key()));
    assert_eq!(
        problems_with(real.path(), KeyStore::builder().chain_key(chain_key())),
        []
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
    // Whoever holds the key is told the store is not the one they keyed.
    assert!(matches!(
        KeyStore::builder().chain_key(chain_key()).check(real.path()),
        Err(Error::ChainKeyMismatch(ChainKeyProblem::NotKeyed))
    ));
    assert!(matches!(
        KeyStore::builder().chain_key(chain_key()).open(real.path()),
        Err(Error::ChainKeyMismatch(ChainKeyProblem::NotKeyed))
    ));
}

#[test]
fn a_history_rechained_without_the_key_fails_the_keyed_check_at_its_head_and_first_record() {
    let chain_key = || ChainKey::from_hex(&"cd".repeat(32)).unwrap();
    let real = tempfile::tempdir().unwrap();
    store_with_history(real.path(), KeyStore::builder().chain_key(chain_key()));
    let forged = tempfile::tempdir().unwrap();
    store_with_history(forged.path(), KeyStore::builder());
    // Same shape of history, public chain and public seal, written into the keyed store's
    // log tree (its keyed chain marker stays).
    let mut entries = Vec::new();
    with_raw_log(forged.path(), |log| {
        entries = log.raw().iter().map(|kv| kv.unwrap()).collect()
    });
    with_raw_log(real.path(), |log| {
        log.raw().clear().unwrap();
        for (k, v) in entries {
            log.raw().insert(k, v).unwrap();
        }
    });
    let found = problems_with(real.path(), KeyStore::builder().chain_key(chain_key()));
    assert_eq!(found[..2], [(0, ProblemKind::Head), (1, ProblemKind::Edited)]);
    assert!(matches!(
        KeyStore::builder().chain_key(chain_key()).open(real.path()),
        Err(Error::Corrupt {
            kind: ProblemKind::Head,
            ..
        })
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
        Err(Error::ChainKeyMismatch(ChainKeyProblem::Missing))
    ));
    assert!(matches!(
        KeyStore::builder().check(dir.path()),
        Err(Error::ChainKeyMismatch(ChainKeyProblem::Missing))
    ));
    let wrong = || KeyStore::builder().chain_key(ChainKey::from_hex(&"02".repeat(32)).unwrap());
    assert!(matches!(
        wrong().open(dir.path()),
        Err(Error::ChainKeyMismatch(ChainKeyProblem::Wrong))
    ));
    assert!(matches!(
        wrong().repair(dir.path()),
        Err(Error::ChainKeyMismatch(ChainKeyProblem::Wrong))
    ));
    assert!(format!("{:?}", ChainKey::from_hex(&"01".repeat(32)).unwrap()).contains("redacted"));
}

/// The rollbacks an attacker with write access tries against a keyed store, to revive the
/// key its last record deleted.
mod rollback {
    use super::*;

    fn keyed() -> keyledger::Builder {
        KeyStore::builder().chain_key(ChainKey::from_hex(&"7e".repeat(32)).unwrap())
    }

    /// A record's `prev`, the chain hash of the record before it: its last 32 bytes.
    fn prev_of(record: &[u8]) -> Vec<u8> {
        record[record.len() - 32..].to_vec()
    }

    #[test]
    fn cutting_off_a_delete_and_writing_a_matching_unsealed_head_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        store_with_history(dir.path(), keyed());
        with_raw_log(dir.path(), |log| {
            // Record 6's link is record 5's chain hash: all an unkeyed head needs.
            let link = prev_of(&log.get(RECORDS));
            log.remove(RECORDS);
            log.raw()
                .insert(b"head", unsealed_anchor(RECORDS - 1, &link))
                .unwrap();
        });
        assert_eq!(problems_with(dir.path(), keyed()), [(0, ProblemKind::Head)]);
        assert!(matches!(
            keyed().open(dir.path()),
            Err(Error::Corrupt {
                kind: ProblemKind::Head,
                ..
            })
        ));
    }

    /// Setting the format marker back to 1 would make an unsealed anchor acceptable
    /// again; a format 1 store cannot hold blocks, so the downgrade is caught.
    #[test]
    fn rolling_the_format_back_to_pass_off_an_unsealed_head_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        store_with_history(dir.path(), keyed());
        with_raw_db(dir.path(), |db| {
            let log = Records(&db.open_tree("log").unwrap());
            let link = prev_of(&log.get(RECORDS));
            log.remove(RECORDS);
            log.raw()
                .insert(b"head", unsealed_anchor(RECORDS - 1, &link))
                .unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert(b"format", &1u32.to_le_bytes())
                .unwrap();
        });
        let opened = keyed().open(dir.path()).map(|s| s.last_seq());
        assert!(
            matches!(
                opened,
                Err(Error::Corrupt {
                    kind: ProblemKind::Head,
                    ..
                })
            ),
            "{opened:?}"
        );
        assert!(problems_with(dir.path(), keyed()).contains(&(0, ProblemKind::Head)));
    }

    #[test]
    fn a_head_from_another_store_does_not_verify() {
        let dir = tempfile::tempdir().unwrap();
        store_with_history(dir.path(), keyed());
        let other = tempfile::tempdir().unwrap();
        store_with_history(other.path(), KeyStore::builder());
        let mut foreign = Vec::new();
        with_raw_log(other.path(), |log| {
            foreign = log.raw().get(b"head").unwrap().unwrap().to_vec()
        });
        with_raw_log(dir.path(), |log| {
            log.raw().insert(b"head", foreign).unwrap();
        });
        assert!(problems_with(dir.path(), keyed()).contains(&(0, ProblemKind::Head)));
    }

    #[test]
    fn wiping_the_whole_log_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        store_with_history(dir.path(), keyed());
        with_raw_log(dir.path(), |log| log.raw().clear().unwrap());
        assert_eq!(problems_with(dir.path(), keyed()), [(0, ProblemKind::Head)]);
        assert!(matches!(keyed().open(dir.path()), Err(Error::Corrupt { .. })));
    }

    /// A head saved before the delete is sealed and fits the shortened log: nothing in the
    /// store can tell, as with a whole older copy of the directory. The witness can.
    #[test]
    fn an_older_sealed_head_passes_inside_the_store_but_not_the_witness() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, witness) = {
            let store = keyed().open(dir.path()).unwrap();
            let admin = Actor::admin("alice");
            let k = store
                .create_key(&admin, NewKey::new("victim").role("bot"))
                .unwrap();
            (k.key.expose_secret().to_owned(), store.head())
        };
        let mut old_head = Vec::new();
        with_raw_log(dir.path(), |log| {
            old_head = log.raw().get(b"head").unwrap().unwrap().to_vec()
        });
        let after_delete = {
            let store = keyed().open(dir.path()).unwrap();
            let id = store.keys()[0].id;
            store.delete_key(&Actor::super_admin("root"), id).unwrap();
            store.head()
        };
        assert_ne!(after_delete, witness);
        with_raw_log(dir.path(), |log| {
            log.remove(2);
            log.raw().insert(b"head", old_head).unwrap();
        });
        let revived = keyed().open(dir.path()).unwrap();
        assert!(revived.verify(&secret, "10.0.0.1".parse().unwrap()).is_ok());
        drop(revived);

        match keyed().expect_head(after_delete).open(dir.path()) {
            Err(Error::WitnessMismatch { expected_seq, .. }) => assert_eq!(expected_seq, 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            problems_with(dir.path(), keyed().expect_head(after_delete)),
            [(2, ProblemKind::Witness)]
        );
        // The witness parses from and prints to the form operators keep.
        assert_eq!(
            after_delete.to_string().parse::<keyledger::Witness>().unwrap(),
            after_delete
        );
    }

    #[test]
    fn a_witness_of_a_forked_history_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        store_with_history(dir.path(), keyed());
        let store = keyed().open(dir.path()).unwrap();
        let mut fork = store.head();
        drop(store);
        fork.hash[0] ^= 1;
        assert!(matches!(
            keyed().expect_head(fork).open(dir.path()),
            Err(Error::WitnessMismatch { .. })
        ));
        let mut earlier = fork;
        earlier.seq = 3;
        assert!(matches!(
            keyed().expect_head(earlier).open(dir.path()),
            Err(Error::WitnessMismatch { .. })
        ));
    }
}

mod torn_tail {
    use super::*;

    #[test]
    fn an_unacknowledged_tail_blocks_open_until_repaired() {
        let dir = tempfile::tempdir().unwrap();
        store_with_history(dir.path(), KeyStore::builder());
        with_raw_log(dir.path(), |log| {
            log.raw()
                .insert((RECORDS + 1).to_be_bytes(), &b"\x02\x00torn block"[..])
                .unwrap();
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
    fn an_undecodable_record_the_head_covers_is_refused_by_repair() {
        let dir = tempfile::tempdir().unwrap();
        store_with_history(dir.path(), KeyStore::builder());
        with_raw_log(dir.path(), |log| {
            let v = log.get(RECORDS);
            log.insert(RECORDS, &v[..v.len() / 2]);
        });
        assert!(matches!(
            KeyStore::open(dir.path()),
            Err(Error::Corrupt { seq: RECORDS, .. })
        ));
        assert!(matches!(
            KeyStore::builder().repair(dir.path()),
            Err(Error::Corrupt { seq: RECORDS, .. })
        ));
    }

    #[test]
    fn damage_inside_the_log_is_refused_by_repair_and_nothing_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        store_with_history(dir.path(), KeyStore::builder());
        with_raw_log(dir.path(), |log| log.insert(2, b"\x01\x00garbage"));
        assert!(matches!(
            KeyStore::builder().repair(dir.path()),
            Err(Error::Corrupt { seq: 2, .. })
        ));
        let mut count = 0;
        with_raw_log(dir.path(), |log| count = log.raw().iter().count());
        assert_eq!(count as u64, RECORDS + 1, "six records and the head");
    }

    /// The head gone and a record damaged: without a head, repair cannot tell what was
    /// acknowledged, so it removes nothing (it used to cut the log at the damage).
    #[test]
    fn without_a_head_repair_removes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        store_with_history(dir.path(), KeyStore::builder());
        with_raw_log(dir.path(), |log| {
            log.raw().remove(b"head").unwrap();
            log.insert(2, b"\x01\x00garbage");
        });
        assert!(matches!(
            KeyStore::builder().repair(dir.path()),
            Err(Error::Corrupt {
                kind: ProblemKind::Head,
                ..
            })
        ));
        let mut count = 0;
        with_raw_log(dir.path(), |log| count = log.raw().iter().count());
        assert_eq!(count as u64, RECORDS, "every record is still there");
    }

    /// A record the head covers whose version a newer build would write: repair refuses
    /// rather than removing acknowledged history it cannot read.
    #[test]
    fn a_record_of_a_newer_version_is_not_repaired_away() {
        for at in [RECORDS, RECORDS + 1] {
            let dir = tempfile::tempdir().unwrap();
            store_with_history(dir.path(), KeyStore::builder());
            with_raw_log(dir.path(), |log| {
                let mut v = log.get(RECORDS);
                v[0] = 5;
                log.insert(at, v);
            });
            assert!(
                matches!(
                    KeyStore::builder().repair(dir.path()),
                    Err(Error::UnsupportedVersion { found: 5, .. })
                ),
                "record {at}"
            );
            let mut count = 0;
            with_raw_log(dir.path(), |log| count = log.raw().iter().count());
            assert_eq!(count as u64, if at == RECORDS { 7 } else { 8 }, "record {at}");
        }
    }

    #[test]
    fn check_and_repair_do_not_create_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing-here");
        assert!(matches!(
            KeyStore::builder().check(&missing),
            Err(Error::NotAStore { .. })
        ));
        assert!(matches!(
            KeyStore::builder().repair(&missing),
            Err(Error::NotAStore { .. })
        ));
        assert!(!missing.exists());
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(matches!(
            KeyStore::builder().check(&empty),
            Err(Error::NotAStore { .. })
        ));
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    }
}

/// A store written by format 1 (one record per entry, an unsealed anchor) keeps opening
/// and proving itself, and becomes format 2 at its first write: the log then holds format 1
/// records followed by blocks.
#[test]
fn a_format_1_store_opens_and_continues_in_blocks() {
    let dir = tempfile::tempdir().unwrap();
    store_with_history(dir.path(), KeyStore::builder());
    // Rewrite it as format 1 would have written it.
    with_raw_db(dir.path(), |db| {
        let log = db.open_tree("log").unwrap();
        let records = Records(&log);
        let all: Vec<Vec<u8>> = (1..=RECORDS).map(|s| records.get(s)).collect();
        let last = blake3::keyed_hash(b"keyledger.log-chain.blake3.v1.26", &all[RECORDS as usize - 1]);
        for (i, r) in all.iter().enumerate() {
            log.insert((i as u64 + 1).to_be_bytes(), r.as_slice()).unwrap();
        }
        log.insert(b"head", unsealed_anchor(RECORDS, last.as_bytes()))
            .unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert(b"format", &1u32.to_le_bytes())
            .unwrap();
    });
    let format_of = |dir: &Path| {
        let mut format = Vec::new();
        with_raw_db(dir, |db| {
            format = db
                .open_tree("meta")
                .unwrap()
                .get(b"format")
                .unwrap()
                .unwrap()
                .to_vec()
        });
        format
    };
    assert_eq!(problems(dir.path()), []);
    {
        let store = KeyStore::open(dir.path()).unwrap();
        assert_eq!(store.last_seq(), RECORDS);
        assert_eq!(store.live_key_count(), 4);
    }
    // Reading, checking and repairing leave it a format 1 store.
    assert_eq!(
        KeyStore::builder().repair(dir.path()).unwrap().removed,
        Vec::<u64>::new()
    );
    assert_eq!(format_of(dir.path()), 1u32.to_le_bytes());
    {
        let store = KeyStore::open(dir.path()).unwrap();
        store
            .create_key(&Actor::admin("alice"), NewKey::new("after").role("bot"))
            .unwrap();
    }
    assert_eq!(format_of(dir.path()), 2u32.to_le_bytes());
    with_raw_db(dir.path(), |db| {
        let log = db.open_tree("log").unwrap();
        let first = log.get(1u64.to_be_bytes()).unwrap().unwrap();
        let last = log.get((RECORDS + 1).to_be_bytes()).unwrap().unwrap();
        assert_eq!(&first[..2], &[1, 0], "format 1 records stay as they are");
        assert_eq!(&last[..2], &[2, 0], "new records are written in blocks");
    });
    assert_eq!(problems(dir.path()), []);
    let store = KeyStore::open(dir.path()).unwrap();
    assert_eq!(store.last_seq(), RECORDS + 1);
    let backup = dir.path().join("backup.kl");
    assert_eq!(store.export(&backup).unwrap(), RECORDS + 1);
}

#[test]
fn a_foreign_entry_in_the_log_tree_is_named_and_blocks_open() {
    let (_d, found) = tampered(|log| {
        log.raw().insert(b"abc", &b"not a record"[..]).unwrap();
    });
    assert_eq!(found, [(0, ProblemKind::Inserted)]);
}

/// Opening from a snapshot takes the records before it on trust. Damage there (record 1
/// edited, record 2 removed, in a keyed store) is found in the background, after which the
/// store refuses writes; `check` names it too.
#[test]
fn damage_behind_a_snapshot_is_found_after_open_and_stops_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = damaged_behind_a_snapshot(dir.path());
    assert!(store.opened_from_snapshot());
    match store.wait_for_integrity() {
        keyledger::Integrity::Damaged(p) => assert!(p.seq <= 2, "{p:?}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.create_key(&Actor::admin("alice"), NewKey::new("more").role("bot")),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(store.last_seq(), RECORDS);
    assert_eq!(store.live_key_count(), 0, "a damaged store verifies no key");
    assert_eq!(store.keys().len(), 4, "its listings stay readable");
    drop(store);
    let found = problems_with(dir.path(), keyed());
    assert!(found.contains(&(2, ProblemKind::Removed)), "{found:?}");
}

fn keyed() -> keyledger::Builder {
    KeyStore::builder()
        .chain_key(ChainKey::from_hex(&"3c".repeat(32)).unwrap())
        .snapshot_every(4)
}

/// A keyed store opened from a snapshot over a history damaged under it (record 1 edited,
/// record 2 removed), which the store finds in the background.
fn damaged_behind_a_snapshot(dir: &Path) -> KeyStore {
    store_with_history(dir, keyed());
    with_raw_log(dir, |log| {
        let mut v = log.get(1);
        let at = v.windows(5).position(|w| w == b"key-1").unwrap();
        v[at + 4] = b'9';
        log.insert(1, v);
        log.remove(2);
    });
    keyed().open(dir).unwrap()
}

/// `keyledger serve`'s probes over a store found damaged: the process is live, but the
/// host is not ready, and `/healthz` says so too.
#[cfg(feature = "serve")]
#[test]
fn a_store_found_damaged_is_live_but_not_ready() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let store = damaged_behind_a_snapshot(dir.path());
    assert!(matches!(
        store.wait_for_integrity(),
        keyledger::Integrity::Damaged(_)
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = keyledger::Server::new(std::sync::Arc::new(store));
    let running = rt.spawn(server.run(listener, async {
        let _ = stopped.await;
    }));
    let get = |path: &str| {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        (head[9..12].to_owned(), body.to_owned())
    };
    let (status, body) = get("/livez");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("200", r#"{"status":"live","last_seq":6}"#)
    );
    let (status, body) = get("/readyz");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("503", r#"{"status":"not_ready","reason":"damaged","last_seq":6}"#)
    );
    assert_eq!(get("/healthz").0, "503");
    stop.send(()).unwrap();
    rt.block_on(running).unwrap();
}
