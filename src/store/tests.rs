use super::*;
use crate::log::Batch;
use crate::log::Log;
use crate::log::LogError;
use crate::log::MetaKey;
use crate::log::sled::SledLog;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};

const FAIL_APPEND: u8 = 1;
const FAIL_FLUSH: u8 = 2;

/// A log that fails its next write or sync when told to.
struct FaultyLog {
    inner: SledLog,
    fault: Arc<AtomicU8>,
}

impl FaultyLog {
    fn take(&self, kind: u8) -> Result<(), LogError> {
        if self
            .fault
            .compare_exchange(kind, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return Err(LogError::Io(std::io::Error::other("injected fault")));
        }
        Ok(())
    }
}

impl LogRead for FaultyLog {
    fn scan(&self, from: u64) -> crate::log::Scan<'_> {
        self.inner.scan(from)
    }

    fn floor(&self, key: u64) -> Result<Option<crate::log::Entry>, LogError> {
        self.inner.floor(key)
    }

    fn head(&self) -> Result<Option<Vec<u8>>, LogError> {
        self.inner.head()
    }

    fn meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, LogError> {
        self.inner.meta(key)
    }

    fn refused(&self) -> Result<Vec<Vec<u8>>, LogError> {
        self.inner.refused()
    }
}

impl Log for FaultyLog {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), LogError> {
        // A write that carries entries fails; a roll-back (no entries) succeeds.
        if !batch.entries.is_empty() {
            self.take(FAIL_APPEND)?;
        }
        self.inner.write(batch)
    }

    fn set_meta(&mut self, key: MetaKey, value: &[u8]) -> Result<(), LogError> {
        self.inner.set_meta(key, value)
    }

    fn sync(&mut self) -> Result<(), LogError> {
        self.take(FAIL_FLUSH)?;
        self.inner.sync()
    }

    fn sync_handle(&self) -> Result<crate::log::SyncHandle, LogError> {
        self.inner.sync_handle()
    }

    fn append_refused(&mut self, records: &[Vec<u8>], keep: u64) -> Result<(), LogError> {
        self.inner.append_refused(records, keep)
    }

    fn reader(&self) -> Box<dyn LogRead> {
        self.inner.reader()
    }

    fn history_writer(&self) -> Result<Box<dyn crate::log::HistoryWrite>, LogError> {
        self.inner.history_writer()
    }
}

fn faulty_store(dir: &Path) -> (KeyStore, Arc<AtomicU8>) {
    let fault = Arc::new(AtomicU8::new(0));
    let options = Builder::default();
    let (inner, lock, info) = options.open_log(dir, true).unwrap();
    let log = Box::new(FaultyLog {
        inner,
        fault: Arc::clone(&fault),
    });
    (
        KeyStore::start(options, log, info, Some((dir.to_path_buf(), lock)), None).unwrap(),
        fault,
    )
}

fn failed_batch_changes_nothing_and_writes_resume(kind: u8) {
    let dir = tempfile::tempdir().unwrap();
    let root = Actor::super_admin("root");
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    let (store, fault) = faulty_store(dir.path());
    let kept = store.create_key(&root, NewKey::new("kept").role("bot")).unwrap();
    let before = (store.all_keys(), store.audit());

    fault.store(kind, Ordering::SeqCst);
    let failed = store.create_key(&root, NewKey::new("lost").role("bot"));
    assert!(matches!(failed, Err(Error::Io(_))), "{failed:?}");
    store.delete_key(&root, kept.id).unwrap();
    // The fault hit exactly one batch: the create. The delete went through after it.
    assert_eq!(store.audit().len(), before.1.len() + 1);
    assert_eq!(store.all_keys()[0].id, kept.id);
    assert!(store.all_keys().iter().all(|k| k.name != "lost"));
    assert!(store.verify(kept.key.expose_secret(), ip).is_err());

    let again = store.create_key(&root, NewKey::new("after").role("bot")).unwrap();
    assert!(store.verify(again.key.expose_secret(), ip).is_ok());
    assert_eq!(store.last_seq(), 3);
    drop(store);

    // What is on disk is exactly what was acknowledged, and proves itself.
    let report = Builder::default().check(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 3);
    let reopened = KeyStore::open(dir.path()).unwrap();
    let names: Vec<String> = reopened.all_keys().into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["kept", "after"]);
}

#[test]
fn failed_append_answers_its_callers_with_an_error_and_changes_nothing() {
    failed_batch_changes_nothing_and_writes_resume(FAIL_APPEND);
}

#[test]
fn failed_flush_answers_its_callers_with_an_error_and_changes_nothing() {
    failed_batch_changes_nothing_and_writes_resume(FAIL_FLUSH);
}

#[test]
fn verify_keeps_serving_while_a_batch_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fault) = faulty_store(dir.path());
    let root = Actor::super_admin("root");
    let k = store.create_key(&root, NewKey::new("k").role("bot")).unwrap();
    let store = Arc::new(store);
    let fails = std::thread::scope(|s| {
        let writer = {
            let store = Arc::clone(&store);
            let fault = Arc::clone(&fault);
            s.spawn(move || {
                (0..20)
                    .filter(|i| {
                        fault.store(
                            if i % 2 == 0 { FAIL_FLUSH } else { FAIL_APPEND },
                            Ordering::SeqCst,
                        );
                        store
                            .create_key(&Actor::admin("a"), NewKey::new("x").role("bot"))
                            .is_err()
                    })
                    .count()
            })
        };
        for _ in 0..10_000 {
            assert!(
                store
                    .verify(k.key.expose_secret(), "1.2.3.4".parse().unwrap())
                    .is_ok()
            );
        }
        writer.join().unwrap()
    });
    assert_eq!(fails, 20);
    assert_eq!(store.last_seq(), 1);
}
