//! What a crash costs credits: a child process spends a key's credits as fast as it can
//! and prints how many it has spent, and when; the parent kills it with SIGKILL at a
//! random moment, reopens the store and checks the bound the README states: the count it
//! finds forgets at most what was spent in the last second before the kill (the save
//! interval, plus the time a save takes), and never counts more than was spent.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyledger::{Actor, Credits, KeyStore, NewKey};
use rand::Rng;

const CHILD_ENV: &str = "KEYLEDGER_CREDITS_CHILD_DIR";
/// The credits the key starts with: more than a child spends before it is killed.
const START: u64 = 1 << 40;
/// The child prints its count every this many requests.
const EVERY: u64 = 64;
/// How stale the saved count may be: the save interval (1 s) and the time one save
/// takes, with room for a busy machine.
const STALE: Duration = Duration::from_millis(1_600);

/// The child's workload: runs until killed. Does nothing unless started by the parent.
#[test]
#[ignore = "entry point of the credits crash child process, started by the crash test"]
fn credits_crash_child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let store = KeyStore::open(&dir).unwrap();
    let secret = std::fs::read_to_string(std::path::Path::new(&dir).join("secret")).unwrap();
    let ip = "192.0.2.1".parse().unwrap();
    let start = Instant::now();
    let mut out = std::io::stdout().lock();
    for spent in 1u64.. {
        store.verify(secret.trim(), ip).unwrap();
        if spent % EVERY == 0 {
            writeln!(out, "{spent} {}", start.elapsed().as_micros()).unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
fn a_kill_forgets_at_most_the_last_second_of_spending() {
    let mut rng = rand::rng();
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = KeyStore::open(dir.path()).unwrap();
            let created = store
                .create_key(
                    &Actor::admin("alice"),
                    NewKey::new("metered")
                        .role("bot")
                        .credits(Credits::new(START).unwrap()),
                )
                .unwrap();
            std::fs::write(dir.path().join("secret"), created.key.expose_secret()).unwrap();
            created.id
        };
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "credits_crash_child_process",
                "--nocapture",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel::<(u64, u64)>();
        let reader = std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let mut parts = line.split_whitespace().map(|p| p.parse::<u64>());
                if let (Some(Ok(spent)), Some(Ok(at))) = (parts.next(), parts.next()) {
                    let _ = tx.send((spent, at));
                }
            }
        });
        // Wait for the child to be spending, then let it run 1.5 to 4 s more.
        let first = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(1_500..4_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let mut printed = vec![first];
        printed.extend(rx.try_iter());
        let &(last, last_at) = printed.last().unwrap();

        let store = KeyStore::open(dir.path()).unwrap();
        let counted = START - store.key(id).unwrap().credits.unwrap().remaining;
        // Spent by the kill: at least `last`, at most `EVERY` more than the last line.
        assert!(
            counted <= last + EVERY,
            "round {round}: counted {counted} spent, but only {last}..{} were",
            last + EVERY
        );
        let stale_from = last_at.saturating_sub(STALE.as_micros() as u64);
        let floor = printed
            .iter()
            .rev()
            .find(|&&(_, at)| at <= stale_from)
            .map_or(0, |&(spent, _)| spent);
        assert!(
            counted >= floor,
            "round {round}: counted {counted} spent, but {floor} were spent {STALE:?} before the kill \
             (last line: {last} at {last_at} µs)"
        );
        eprintln!(
            "round {round}: spent at least {last}, counted {counted} after the kill: {} forgotten",
            last.saturating_sub(counted)
        );
    }
}
