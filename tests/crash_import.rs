//! An import is one commit: a child process adopts batches of existing keys and prints
//! every batch the store acknowledged; the parent kills it with SIGKILL at random moments
//! (during open, mid-import, between imports), reopens the store and checks that every
//! batch is wholly there or wholly absent, and every acknowledged one is there.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyledger::{Actor, ExistingKey, KeyStore, NewKey};
use rand::Rng;

const CHILD_ENV: &str = "KEYLEDGER_CRASH_IMPORT_DIR";
/// Keys per import.
const BATCH: usize = 1500;

fn secret(batch: usize, i: usize) -> String {
    format!("legacy_{batch:06}_{i:08}_secret")
}

/// The child: imports batch after batch, printing `ack N` once batch N is durable.
#[test]
fn crash_import_child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let store = KeyStore::open(&dir).unwrap();
    let start = store.all_keys().len() / BATCH;
    let root = Actor::super_admin("root");
    for batch in start.. {
        let keys = (0..BATCH)
            .map(|i| {
                let new = NewKey::new(format!("b{batch} k{i}")).role("bot");
                ExistingKey::with_secret(new, &secret(batch, i)).unwrap()
            })
            .collect();
        store.import_keys(&root, keys).unwrap();
        println!("ack {batch}");
    }
}

#[test]
fn an_import_killed_at_any_moment_is_wholly_there_or_wholly_absent() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut acked: BTreeSet<usize> = BTreeSet::new();
    let mut durable_unacked = 0;
    // Twelve kills at random moments; on a loaded machine a child may take longer than
    // the window to acknowledge anything, so kills go on, later each round, until one
    // import was acknowledged.
    let mut round = 0u64;
    while round < 12 || (acked.is_empty() && round < 40) {
        round += 1;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_import_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("ack ") {
                    let _ = tx.send(n.parse::<usize>().unwrap());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(5..400 * (1 + round / 12)));
        while Instant::now() < deadline {
            if let Ok(n) = rx.recv_timeout(Duration::from_millis(1)) {
                acked.insert(n);
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(rx.try_iter());

        let store = KeyStore::open(dir.path()).unwrap();
        let mut per_batch: BTreeMap<usize, usize> = BTreeMap::new();
        for key in store.all_keys() {
            let batch = key.name[1..key.name.find(' ').unwrap()].parse().unwrap();
            *per_batch.entry(batch).or_default() += 1;
        }
        for (batch, count) in &per_batch {
            assert_eq!(*count, BATCH, "batch {batch} is partly there");
        }
        for batch in &acked {
            assert!(per_batch.contains_key(batch), "acknowledged batch {batch} lost");
        }
        durable_unacked = per_batch.keys().filter(|b| !acked.contains(b)).count();
        // A batch that is there verifies.
        if let Some(&batch) = per_batch.keys().last() {
            assert!(
                store
                    .verify(&secret(batch, BATCH - 1), "10.0.0.1".parse().unwrap())
                    .is_ok()
            );
        }
        drop(store);
        assert!(KeyStore::builder().check(dir.path()).unwrap().is_intact());
    }
    assert!(
        !acked.is_empty(),
        "no import was ever acknowledged: kills came too early"
    );
    eprintln!(
        "{} batches acknowledged; {durable_unacked} more were durable when their process was killed",
        acked.len()
    );
}
