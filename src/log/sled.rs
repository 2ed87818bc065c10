//! sled 0.34.7 as the log: the only file that names the engine.
//!
//! Tree `log` maps a big-endian `u64` (an entry's first sequence number) to the entry, and
//! the 4-byte key `head` to the encoded head, so that entries and head change in one
//! atomic sled batch. Tree `meta` holds the format and chain markers; tree `refused` the
//! security trail, apart from the log. Durability is
//! explicit: no background flush, and [`Log::sync`] is sled's flush plus an `fdatasync`.

use std::path::Path;

use super::{Batch, Entry, Log, LogError, LogRead, MetaKey, Scan};

const LOG_TREE: &str = "log";
const META_TREE: &str = "meta";
/// The security trail: refused commands, keyed by a big-endian `u64` of its own.
const REFUSED_TREE: &str = "refused";
/// Key of the head in the log tree: shorter than a sequence number, so never one.
const HEAD_KEY: &[u8] = b"head";

impl From<sled::Error> for LogError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => LogError::Io(io),
            sled::Error::Corruption { .. } => LogError::Corrupt(e.to_string()),
            other => LogError::Engine(other.to_string()),
        }
    }
}

pub(crate) struct SledLog {
    log: sled::Tree,
    meta: sled::Tree,
    refused: sled::Tree,
    durable: Durable,
}

/// What makes the database durable: sled's flush, then its files synced. A writer's own,
/// or another thread's ([`Log::sync_handle`]): sled takes a flush from any thread.
struct Durable {
    db: sled::Db,
    /// sled's data file, to fsync: sled itself ends a flush with `sync_file_range`, which
    /// neither flushes the drive's write cache nor the file's size.
    data_file: std::fs::File,
    /// sled's `blobs/` directory, and the blob files already synced. sled writes a page
    /// of more than about 128 KiB to a blob file and never syncs it nor the directory:
    /// after a power loss a blob that an acknowledged entry points to could be missing or
    /// torn, and sled's recovery would then cut the log short there.
    blobs: std::path::PathBuf,
    synced_blobs: std::collections::HashSet<std::ffi::OsString>,
    /// The directory's modification time when it was last listed: unchanged, no file was
    /// added since, and the listing is skipped.
    blobs_listed: Option<std::time::SystemTime>,
}

impl SledLog {
    /// Whether directory `path` holds a sled database.
    pub(crate) fn exists(path: &Path) -> bool {
        path.join("db").is_file()
    }

    /// Removes what an interrupted first open left in `path` (a `conf` written without its
    /// checksum makes every later open fail with `Corruption`), if sled never wrote its
    /// database there: then nothing was ever written.
    pub(crate) fn discard_unfinished(path: &Path) -> Result<(), LogError> {
        if Self::exists(path) {
            return Ok(());
        }
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Opens the sled database in directory `path` with a small cache and no background
    /// flushing; creates it only if `create`.
    pub(crate) fn open(path: &Path, cache_bytes: u64, create: bool) -> Result<Self, LogError> {
        if !create && !Self::exists(path) {
            return Err(LogError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no sled database in {}", path.display()),
            )));
        }
        remove_unfinished_snapshots(path)?;
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            // The log only appends, so sled's compaction-favouring default buys no space
            // here (measured: the same size at 100k records) and costs write throughput.
            .mode(sled::Mode::HighThroughput);
        let db = open_retrying(&config)?;
        let log = db.open_tree(LOG_TREE)?;
        let meta = db.open_tree(META_TREE)?;
        let refused = db.open_tree(REFUSED_TREE)?;
        let data_file = open_own(&path.join("db"))?;
        // sled writes its `conf` without syncing it; make it and the files sled may just
        // have created part of the directory for good.
        open_own(&path.join("conf"))?.sync_all()?;
        open_own(path)?.sync_all()?;
        Ok(SledLog {
            log,
            meta,
            refused,
            durable: Durable {
                db,
                data_file,
                blobs: path.join("blobs"),
                synced_blobs: std::collections::HashSet::new(),
                blobs_listed: None,
            },
        })
    }
}

/// Removes every `snap.*.generating` file in sled's directory.
///
/// sled 0.34.7 writes a snapshot of its page table to `snap.<LSN>.generating`, syncs it and
/// renames it to `snap.<LSN>`. But when it opens, it lists every `snap.*` file (only
/// `*.in___motion` is skipped), sorts the names and reads the last one: a `.generating`
/// left by a kill mid-write sorts after the finished snapshot of the same LSN and is taken
/// as the newest, and an empty or partial one makes every later open fail with
/// `Corruption { at: None }`. sled writes such a snapshot while it opens, so a kill during
/// any open can leave one. A finished snapshot never keeps that name, so such a file is
/// always a leftover and is safe to remove (sled then uses the previous snapshot, or scans
/// its whole segment log).
fn remove_unfinished_snapshots(dir: &Path) -> Result<(), LogError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(dir.join(&*name))?;
        }
    }
    Ok(())
}

/// Opens sled, waiting out its file lock for a moment: the caller already holds the
/// store's own lock, so a busy sled lock can only be a just-closed instance of this process
/// whose background threads are still letting go of the file.
fn open_retrying(config: &sled::Config) -> Result<sled::Db, LogError> {
    let mut wait = std::time::Duration::from_millis(1);
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && wait < std::time::Duration::from_secs(1) =>
            {
                std::thread::sleep(wait);
                wait *= 2;
            }
            other => return Ok(other?),
        }
    }
}

fn meta_key(key: MetaKey) -> &'static [u8] {
    match key {
        MetaKey::Format => b"format",
        MetaKey::Chain => b"chain",
        MetaKey::Position => b"position",
        MetaKey::Contact => b"contact",
        MetaKey::History => b"history",
    }
}

/// The entries of `tree` from `from` on, skipping the head.
fn scan_tree(tree: &sled::Tree, from: u64) -> Scan<'static> {
    Box::new(
        tree.range(from.to_be_bytes()..)
            .filter(|kv| !matches!(kv, Ok((k, _)) if k.as_ref() == HEAD_KEY))
            .map(|kv| {
                let (k, v) = kv?;
                Ok((seq_of(&k)?, v.to_vec()))
            }),
    )
}

/// Opens one of sled's own files or directories to sync it: never through a link, never
/// waiting on a FIFO or a device someone planted there (the store is then refused with an
/// I/O error naming it, rather than hung).
fn open_own(path: &Path) -> Result<std::fs::File, LogError> {
    let file = crate::file::private_options()
        .read(true)
        .open(path)
        .map_err(|e| {
            LogError::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e} (a link there is refused)", path.display()),
            ))
        })?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() || kind.is_dir() {
        Ok(file)
    } else {
        Err(LogError::Io(std::io::Error::other(format!(
            "{} is neither a regular file nor a directory: something was planted in the store's log",
            path.display()
        ))))
    }
}

fn seq_of(key: &[u8]) -> Result<u64, LogError> {
    <[u8; 8]>::try_from(key).map(u64::from_be_bytes).map_err(|_| {
        LogError::Corrupt(format!(
            "a log key of {} bytes is not a sequence number",
            key.len()
        ))
    })
}

/// Reads the log and meta trees: what [`SledLog`] and its readers share.
struct Trees {
    log: sled::Tree,
    meta: sled::Tree,
    refused: sled::Tree,
}

impl LogRead for Trees {
    fn scan(&self, from: u64) -> Scan<'_> {
        scan_tree(&self.log, from)
    }

    fn floor(&self, key: u64) -> Result<Option<Entry>, LogError> {
        // The head's key sorts among the sequence numbers (after every one below 2^62).
        let entry = self
            .log
            .range(..=key.to_be_bytes())
            .rev()
            .find(|kv| !matches!(kv, Ok((k, _)) if k.as_ref() == HEAD_KEY));
        match entry {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some((seq_of(&k)?, v.to_vec())))
            }
        }
    }

    fn head(&self) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.log.get(HEAD_KEY)?.map(|v| v.to_vec()))
    }

    fn meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.meta.get(meta_key(key))?.map(|v| v.to_vec()))
    }

    fn refused(&self) -> Result<Vec<Vec<u8>>, LogError> {
        self.refused.iter().values().map(|v| Ok(v?.to_vec())).collect()
    }
}

impl SledLog {
    fn trees(&self) -> Trees {
        Trees {
            log: self.log.clone(),
            meta: self.meta.clone(),
            refused: self.refused.clone(),
        }
    }
}

impl Durable {
    fn sync(&mut self) -> Result<(), LogError> {
        self.db.flush()?;
        self.sync_new_blobs()?;
        self.data_file.sync_data()?;
        Ok(())
    }

    /// Another handle on the same files, for another thread.
    fn another(&self) -> Result<Self, LogError> {
        Ok(Durable {
            db: self.db.clone(),
            data_file: self.data_file.try_clone()?,
            blobs: self.blobs.clone(),
            synced_blobs: std::collections::HashSet::new(),
            blobs_listed: None,
        })
    }

    /// Syncs the blob files sled wrote since the last sync, and their directory.
    fn sync_new_blobs(&mut self) -> Result<(), LogError> {
        let modified = match std::fs::metadata(&self.blobs) {
            Ok(m) => m.modified()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if self.blobs_listed == Some(modified) {
            return Ok(());
        }
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut present = std::collections::HashSet::new();
        let mut new = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                open_own(&entry.path())?.sync_all()?;
                new = true;
            }
            present.insert(name);
        }
        if new {
            open_own(&self.blobs)?.sync_all()?;
        }
        // Forget the ones sled removed.
        self.synced_blobs = present;
        self.blobs_listed = Some(modified);
        Ok(())
    }
}

impl LogRead for SledLog {
    fn scan(&self, from: u64) -> Scan<'_> {
        scan_tree(&self.log, from)
    }

    fn floor(&self, key: u64) -> Result<Option<Entry>, LogError> {
        self.trees().floor(key)
    }

    fn head(&self) -> Result<Option<Vec<u8>>, LogError> {
        self.trees().head()
    }

    fn meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, LogError> {
        self.trees().meta(key)
    }

    fn refused(&self) -> Result<Vec<Vec<u8>>, LogError> {
        self.trees().refused()
    }
}

impl Log for SledLog {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), LogError> {
        let mut b = sled::Batch::default();
        if let Some(from) = batch.discard_from {
            for kv in self.log.range(from.to_be_bytes()..) {
                let key = kv?.0;
                if key.len() == 8 {
                    b.remove(key);
                }
            }
        }
        for (key, bytes) in batch.entries {
            b.insert(&key.to_be_bytes(), bytes.as_slice());
        }
        b.insert(HEAD_KEY, batch.head);
        self.log.apply_batch(b)?;
        Ok(())
    }

    fn set_meta(&mut self, key: MetaKey, value: &[u8]) -> Result<(), LogError> {
        self.meta.insert(meta_key(key), value)?;
        Ok(())
    }

    fn append_refused(&mut self, records: &[Vec<u8>], keep: u64) -> Result<(), LogError> {
        // Keys are our own sequence, contiguous from the first kept one.
        let first = match self.refused.first()? {
            Some((k, _)) => seq_of(&k)?,
            None => 1,
        };
        let mut next = match self.refused.last()? {
            Some((k, _)) => seq_of(&k)? + 1,
            None => 1,
        };
        let mut b = sled::Batch::default();
        for r in records {
            b.insert(&next.to_be_bytes(), r.as_slice());
            next += 1;
        }
        for seq in first..next.saturating_sub(keep) {
            b.remove(&seq.to_be_bytes());
        }
        self.refused.apply_batch(b)?;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), LogError> {
        self.durable.sync()
    }

    fn sync_handle(&self) -> Result<super::SyncHandle, LogError> {
        let mut durable = self.durable.another()?;
        Ok(Box::new(move || durable.sync()))
    }

    fn reader(&self) -> Box<dyn LogRead> {
        Box::new(self.trees())
    }

    fn history_writer(&self) -> Result<Box<dyn super::HistoryWrite>, LogError> {
        Ok(Box::new(HistoryWriter {
            trees: self.trees(),
            durable: self.durable.another()?,
        }))
    }
}

/// [`Log::history_writer`]'s answer: the same trees and files, another thread's handle.
struct HistoryWriter {
    trees: Trees,
    durable: Durable,
}

impl super::HistoryWrite for HistoryWriter {
    fn write(&mut self, entries: &[Entry], history: Option<&[u8]>) -> Result<(), LogError> {
        let mut b = sled::Batch::default();
        for (key, bytes) in entries {
            b.insert(&key.to_be_bytes(), bytes.as_slice());
        }
        self.trees.log.apply_batch(b)?;
        let key = meta_key(MetaKey::History);
        match history {
            Some(state) => self.trees.meta.insert(key, state)?,
            None => self.trees.meta.remove(key)?,
        };
        self.durable.sync()
    }
}
