//! Joining a fleet from a published snapshot, on a real nats-server: a host publishes the
//! snapshots it saves in the fleet's object store; a new host (an empty directory) loads the
//! newest one the stream proves, replays only the stream's tail, and fetches the history
//! under the snapshot in the background until its export is byte-identical to the others'.
//! A snapshot the stream does not prove (junk, or one sealed with the fleet's own key for
//! another stream's history) is refused and the host replays the stream.

#![allow(clippy::unwrap_used)]

#[path = "support/in_process.rs"]
mod in_process;
#[path = "support/nats.rs"]
mod nats;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use keyledger::{Actor, ChainKey, Error, ExistingKey, Integrity, KeyStore, NewKey, Rejection};

/// The child process of the kill test: `dir url`.
const CHILD_ENV: &str = "KEYLEDGER_JOIN_CHILD";

use in_process::{CHAIN_KEY, eventually, options};
use nats::NatsServer;

const BUCKET: &str = "keyledger-snapshots";
const IP: &str = "10.1.2.3";
const NET: &str = "10.0.0.0/8";

fn secret(batch: usize, i: usize) -> String {
    format!("legacy_{batch:06}_{i:08}_secret")
}

/// Opens host `name` in `dir` on stream `stream`, saving a snapshot every `every` records.
fn host(dir: &Path, url: &str, stream: &str, name: &str, every: u64) -> KeyStore {
    KeyStore::builder()
        .chain_key(ChainKey::from_bytes(CHAIN_KEY))
        .snapshot_every(every)
        .fleet(options(url, name).stream(stream))
        .open(dir.join(name))
        .unwrap_or_else(|e| panic!("host {name}: {e}"))
}

/// Imports `batches` batches of 500 keys (one record each) through `store`.
fn fill(store: &KeyStore, batches: std::ops::Range<usize>) {
    let root = Actor::super_admin("root");
    for batch in batches {
        let keys = (0..500)
            .map(|i| {
                let new = NewKey::new(format!("b{batch} k{i}"))
                    .role("bot")
                    .allow(NET.parse().unwrap());
                ExistingKey::with_secret(new, &secret(batch, i)).unwrap()
            })
            .collect();
        store.import_keys(&root, keys).unwrap();
    }
}

/// Runs `f` with a plain NATS client on the test's own runtime.
fn as_client<T>(url: &str, f: impl AsyncFnOnce(async_nats::jetstream::Context) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        f(async_nats::jetstream::new(client)).await
    })
}

/// The record the published snapshot in `bucket` stands at, as its metadata says.
fn published_seq(url: &str, bucket: &str) -> Option<u64> {
    as_client(url, async |js| {
        let store = js.get_object_store(bucket).await.ok()?;
        let info = store.info("snapshot").await.ok()?;
        info.metadata.get("seq")?.parse().ok()
    })
}

/// Replaces the published snapshot with `bytes`, claiming record `seq`.
fn plant(url: &str, bytes: Vec<u8>, seq: u64) {
    as_client(url, async |js| {
        let store = js.get_object_store(BUCKET).await.unwrap();
        let meta = async_nats::jetstream::object_store::ObjectMetadata {
            name: "snapshot".into(),
            metadata: HashMap::from([("seq".to_owned(), seq.to_string())]),
            ..Default::default()
        };
        store.put(meta, &mut bytes.as_slice()).await.unwrap();
    });
}

/// The published snapshot's bytes in `bucket`.
fn fetch(url: &str, bucket: &str) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    as_client(url, async |js| {
        let store = js.get_object_store(bucket).await.unwrap();
        let mut object = store.get("snapshot").await.unwrap();
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.unwrap();
        bytes
    })
}

fn export(store: &KeyStore, path: &Path) -> Vec<u8> {
    store.export(path).unwrap();
    std::fs::read(path).unwrap()
}

/// Host a fills the stream and publishes its snapshots; after a tail of creates and a
/// deletion of a key the snapshot holds, host c joins from an empty directory: from the
/// snapshot, with only the tail replayed; every key verifies there at once (the deleted one
/// does not), its history is fetched and proven in the background, and then its export is
/// a's, byte for byte; reopened, it opens from its own snapshot.
#[test]
fn a_new_host_joins_from_the_published_snapshot_and_fetches_the_history_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let url = nats.url();
    let a = host(dir.path(), &url, "keyledger", "a", 2_000);
    fill(&a, 0..12);
    eventually(30, "a publishes a snapshot", || {
        published_seq(&url, BUCKET).is_some_and(|seq| seq >= 4_000)
    });
    let snapshot_seq = published_seq(&url, BUCKET).unwrap();
    // A fetch reads at most 8x the stream's bytes: genuine snapshots stay far below.
    let (object, stream) = as_client(&url, async |js| {
        let object = js
            .get_object_store(BUCKET)
            .await
            .unwrap()
            .info("snapshot")
            .await
            .unwrap()
            .size;
        let stream = js
            .get_stream("keyledger")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .bytes;
        (object as u64, stream)
    });
    assert!(
        object < 2 * stream,
        "a snapshot of {object} bytes from a stream of {stream}"
    );
    // The tail: more keys, and a key the snapshot holds deleted.
    fill(&a, 12..13);
    let root = Actor::super_admin("root");
    let first = a.verify(&secret(0, 0), IP.parse().unwrap()).unwrap();
    a.delete_key(&root, first.id()).unwrap();

    let c = host(dir.path(), &url, "keyledger", "c", 2_000);
    assert!(c.opened_from_snapshot(), "c joined from the published snapshot");
    assert_eq!(c.last_seq(), a.last_seq());
    assert!(c.last_seq() > snapshot_seq);
    for (batch, i) in [(0, 1), (5, 250), (11, 499), (12, 0), (12, 499)] {
        assert!(
            c.verify(&secret(batch, i), IP.parse().unwrap()).is_ok(),
            "key {batch}/{i} verifies on c at once"
        );
    }
    assert_eq!(
        c.verify(&secret(0, 0), IP.parse().unwrap()).unwrap_err(),
        Rejection::UnknownKey,
        "the key deleted after the snapshot does not verify on c"
    );
    // Until the history is here an export is refused, named; then it is a's.
    match c.export(dir.path().join("early.klbak")) {
        Ok(_) | Err(Error::HistoryIncomplete { .. }) => {}
        Err(e) => panic!("an export while the history is fetched: {e}"),
    }
    eventually(60, "c fetches and proves the history under its snapshot", || {
        c.integrity() == Integrity::Verified
    });
    let of_a = export(&a, &dir.path().join("a.klbak"));
    assert_eq!(export(&c, &dir.path().join("c.klbak")), of_a, "c's export is a's");
    // A write through c lands everywhere.
    let created = c
        .create_key(
            &root,
            NewKey::new("after").role("bot").allow(NET.parse().unwrap()),
        )
        .unwrap();
    eventually(10, "a applies c's write", || a.last_seq() == c.last_seq());
    assert!(a.verify(created.key.expose_secret(), IP.parse().unwrap()).is_ok());
    drop(c);
    let c = host(dir.path(), &url, "keyledger", "c", 2_000);
    assert!(c.opened_from_snapshot(), "reopened from its own snapshot");
    eventually(30, "c verifies its history again", || {
        c.integrity() == Integrity::Verified
    });
    assert_eq!(
        export(&c, &dir.path().join("c2.klbak")),
        export(&a, &dir.path().join("a2.klbak"))
    );
}

/// Junk in the bucket, and then a genuine snapshot sealed with the fleet's own chain key
/// but of another stream's history (what a holder of the key or of a second fleet's
/// bucket could put there): each refused, the new host replays the stream and ends with
/// exactly a's history.
#[test]
fn a_snapshot_the_stream_does_not_prove_is_refused_and_the_host_replays_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let url = nats.url();
    let a = host(dir.path(), &url, "keyledger", "a", 1_000);
    fill(&a, 0..4);
    eventually(30, "a publishes a snapshot", || {
        published_seq(&url, BUCKET).is_some()
    });
    // Another fleet on the same server with the same chain key, other keys.
    let other = host(dir.path(), &url, "other", "o", 1_000);
    fill(&other, 100..104);
    eventually(30, "the other fleet publishes a snapshot", || {
        published_seq(&url, "other-snapshots").is_some()
    });
    let foreign = fetch(&url, "other-snapshots");

    let mut junk = fetch(&url, BUCKET);
    let middle = junk.len() / 2;
    junk[middle] ^= 0x40;
    for (name, planted) in [("flipped", junk), ("foreign", foreign)] {
        plant(&url, planted, 1_000_000);
        let c = host(dir.path(), &url, "keyledger", &format!("c-{name}"), 1_000);
        assert!(
            !c.opened_from_snapshot(),
            "{name}: the planted snapshot is refused"
        );
        assert_eq!(c.integrity(), Integrity::Verified, "{name}: replayed in full");
        assert_eq!(c.last_seq(), a.last_seq());
        assert!(c.verify(&secret(3, 7), IP.parse().unwrap()).is_ok());
        assert_eq!(
            c.verify(&secret(100, 7), IP.parse().unwrap()).unwrap_err(),
            Rejection::UnknownKey,
            "{name}: nothing of the other fleet's"
        );
        assert_eq!(
            export(&c, &dir.path().join(format!("c-{name}.klbak"))),
            export(&a, &dir.path().join(format!("a-{name}.klbak")))
        );
    }
    // The planted object claims record 1,000,000, which no genuine snapshot of this
    // stream can: a's next snapshot replaces it.
    fill(&a, 4..6);
    eventually(30, "a publishes over the implausible claim", || {
        published_seq(&url, BUCKET).is_some_and(|seq| seq <= a.last_seq())
    });
}

/// The child: joins as host c, says so (and whether its history is verified yet), then
/// waits to be killed.
#[test]
fn join_child_process() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, url) = args.split_once(' ').unwrap();
    let c = host(Path::new(dir), url, "keyledger", "c", 100_000);
    println!("joined {} {:?}", c.opened_from_snapshot(), c.integrity());
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// A new host killed (SIGKILL) while it fetches the history under its snapshot: its store
/// says the history is incomplete (check refuses, naming it), and opened again it resumes
/// the fetch, proves the history and exports what a exports, byte for byte.
#[test]
fn a_host_killed_while_fetching_its_history_resumes_it_when_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let url = nats.url();
    let a = host(dir.path(), &url, "keyledger", "a", 100_000);
    fill(&a, 0..1);
    // A witness kept from early on: it lies in the history a joined host fetches later.
    let early = a.head();
    fill(&a, 1..240);
    eventually(60, "a publishes a snapshot", || {
        published_seq(&url, BUCKET).is_some_and(|seq| seq >= 100_000)
    });
    // After the snapshot's message, more junk on the stream's subject than a restart looks
    // back over from the position it stored: c, lacking records before the snapshot's
    // message, must be compared with the stream from there, not from its genesis.
    as_client(&url, async |js| {
        for _ in 0..1_100 {
            js.publish("keyledger.keyledger.log", "junk".into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
    let c_dir = dir.path().join("c");
    let mut interrupted = 0;
    for attempt in 0..3 {
        let _ = std::fs::remove_dir_all(&c_dir);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["join_child_process", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{} {url}", dir.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let joined = lines
            .find_map(|l| {
                // The harness may print the test's name on the same line first.
                let l = l.ok()?;
                l.find("joined ").map(|at| l[at + "joined ".len()..].to_owned())
            })
            .expect("the child joins");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            joined.starts_with("true"),
            "attempt {attempt}: joined from the snapshot: {joined}"
        );
        let checked = KeyStore::builder()
            .chain_key(ChainKey::from_bytes(CHAIN_KEY))
            .check(&c_dir);
        match checked {
            Err(Error::HistoryIncomplete { first }) => {
                assert!(first > 1);
                interrupted += 1;
            }
            Ok(report) => assert!(report.is_intact(), "attempt {attempt}: {report:?}"),
            Err(e) => panic!("attempt {attempt}: check after the kill: {e}"),
        }
        // Given the early witness, a host still fetching the history opens, and checks it
        // once the history is here.
        let c = KeyStore::builder()
            .chain_key(ChainKey::from_bytes(CHAIN_KEY))
            .snapshot_every(100_000)
            .expect_head(early)
            .fleet(options(&url, "c"))
            .open(&c_dir)
            .unwrap_or_else(|e| panic!("attempt {attempt}: c with the early witness: {e}"));
        assert!(c.opened_from_snapshot());
        eventually(60, "c resumes and proves its history", || {
            c.integrity() == Integrity::Verified
        });
        assert_eq!(
            export(&c, &dir.path().join("c.klbak")),
            export(&a, &dir.path().join("a.klbak")),
            "attempt {attempt}"
        );
        drop(c);
        if interrupted > 0 {
            break;
        }
    }
    assert!(interrupted > 0, "no kill landed while the history was fetched");
}
