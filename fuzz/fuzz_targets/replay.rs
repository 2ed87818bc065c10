//! Arbitrary records placed in a store's log, then open: an error or a consistent store,
//! never a panic, and `check` agrees. Half the inputs get their chain links repaired
//! first, so replay reaches the access rules. Records are laid out as format 1 entries
//! followed by blocks of arbitrary sizes (a store upgraded from format 1).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    rechain: bool,
    /// `Ok(true)`: the matching sealed head; `Ok(false)`: none; `Err`: these bytes.
    head: Result<bool, Vec<u8>>,
    /// How many records come first, one per entry, as format 1 wrote them.
    legacy: u8,
    /// Records per block, cycled.
    blocks: Vec<u8>,
    records: Vec<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    let dir = tempfile::tempdir().expect("temp dir");
    let records = if input.rechain {
        keyledger::fuzzing::rechain(input.records)
    } else {
        input.records
    };
    {
        // Lay the store out as keyledger does, then write the records straight into sled.
        let store = keyledger::KeyStore::open(dir.path()).expect("fresh store");
        drop(store);
        // sled's background threads can hold its file lock for a moment after the store
        // is dropped; keyledger's own open waits that out, and so does this harness.
        let config = sled::Config::new().path(dir.path().join("log")).flush_every_ms(None);
        let mut attempts = 0;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(_) if attempts < 200 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("sled: {e:?}"),
            }
        };
        let log = db.open_tree("log").expect("tree");
        let entries = keyledger::fuzzing::entries(&records, usize::from(input.legacy), &input.blocks);
        for (key, bytes) in entries {
            log.insert(key.to_be_bytes(), bytes).expect("insert");
        }
        let head = match input.head {
            Ok(true) => keyledger::fuzzing::head_for(&records),
            Ok(false) => None,
            Err(bytes) => Some(bytes),
        };
        match head {
            Some(head) => log.insert(b"head", head).map(drop).expect("insert"),
            None => log.remove(b"head").map(drop).expect("remove"),
        }
        db.flush().expect("flush");
    }
    let report = keyledger::KeyStore::builder()
        .check(dir.path())
        .expect("check runs");
    match keyledger::KeyStore::open(dir.path()) {
        Ok(store) => {
            assert!(report.is_intact(), "opened a log that check rejects: {report:?}");
            assert_eq!(store.last_seq(), records.len() as u64);
            assert_eq!(store.audit().len(), records.len());
            let live = store.keys();
            assert_eq!(live.len(), store.live_key_count());
            assert!(live.iter().all(|k| k.deleted.is_none()));
        }
        Err(_) => assert!(!report.is_intact(), "check passed a log that open rejects"),
    }
});
