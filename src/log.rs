//! The append-only log: where records become durable, and the hash chain that links them.
//!
//! [`Log`] is the small seam between the store and its storage engine (sled here; a fault
//! injector in tests; a shared log later). A log only appends and reads back; it never
//! interprets records and never rewrites an acknowledged one.

use std::path::Path;

use crate::{Error, codec};

/// Stored bytes of one record, as the engine hands them back.
pub(crate) type Bytes = sled::IVec;

/// Records from a sequence number on, in order.
pub(crate) type Scan<'a> = Box<dyn Iterator<Item = Result<(u64, Bytes), Error>> + 'a>;

/// The log's last record as the writer last made it durable: sequence number and chain
/// hash. Stored with every batch, it lets a reader detect a lost, extra or edited tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Anchor {
    pub(crate) seq: u64,
    pub(crate) hash: [u8; 32],
}

/// One atomic write to the log.
pub(crate) struct Batch<'a> {
    /// Records from here on were appended by a batch whose flush failed (so never
    /// acknowledged): remove them first. Their sequence numbers are reused.
    pub(crate) discard_from: Option<u64>,
    /// Records with consecutive sequence numbers.
    pub(crate) records: &'a [(u64, Vec<u8>)],
    /// The anchor after this batch (`None` only when the batch leaves the log empty).
    pub(crate) anchor: Option<Anchor>,
}

/// Where records are kept.
pub(crate) trait Log: Send + Sync {
    /// Applies a batch, all or nothing. It is durable only after [`Log::flush`] succeeds.
    fn append(&mut self, batch: &Batch<'_>) -> Result<(), Error>;

    /// Makes everything appended durable.
    fn flush(&mut self) -> Result<(), Error>;

    /// The anchor of the last applied batch, if any.
    fn anchor(&self) -> Result<Option<Anchor>, Error>;

    /// Reads records from `seq` on, in key order.
    fn scan(&self, seq: u64) -> Scan<'_>;
}

/// The secret key of a keyed chain: whoever lacks it cannot forge a history that passes
/// a keyed check. Kept outside the store (an environment variable or a file); never printed.
#[derive(Clone)]
pub struct ChainKey([u8; 32]);

impl ChainKey {
    /// A key from 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ChainKey(bytes)
    }

    /// A key from 64 hexadecimal digits (surrounding white space ignored).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if it is not 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, Error> {
        let hex = hex.trim().as_bytes();
        let digit = |c: u8| (c as char).to_digit(16);
        if hex.len() != 64 {
            return Err(Error::invalid(
                "chain key",
                format!("must be 64 hex digits, got {}", hex.len()),
            ));
        }
        let mut key = [0u8; 32];
        for (out, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => *out = (h * 16 + l) as u8,
                _ => return Err(Error::invalid("chain key", "must be 64 hex digits")),
            }
        }
        Ok(ChainKey(key))
    }

    /// A fresh random key, as 64 hex digits to keep somewhere safe.
    ///
    /// # Errors
    /// [`Error::Entropy`] if the OS random number generator fails.
    pub fn generate_hex() -> Result<String, Error> {
        use rand::TryRngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut key)
            .map_err(|e| Error::Entropy(e.to_string()))?;
        let hex = key.iter().map(|b| format!("{b:02x}")).collect();
        zeroize::Zeroize::zeroize(&mut key);
        Ok(hex)
    }
}

impl Drop for ChainKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(redacted)")
    }
}

/// The chain's hash function: blake3 keyed with either a public constant (anyone can
/// recompute the chain) or a secret [`ChainKey`] (only its holder can).
#[derive(Clone)]
pub(crate) struct Chain {
    key: [u8; 32],
    keyed: bool,
}

const PUBLIC_CHAIN_KEY: &[u8; 32] = b"keyledger.log-chain.blake3.v1.26";

impl Chain {
    pub(crate) fn new(key: Option<&ChainKey>) -> Self {
        match key {
            Some(k) => Chain {
                key: k.0,
                keyed: true,
            },
            None => Chain {
                key: *PUBLIC_CHAIN_KEY,
                keyed: false,
            },
        }
    }

    pub(crate) fn is_keyed(&self) -> bool {
        self.keyed
    }

    /// The chain hash of a record, given its encoded bytes (which hold the previous hash).
    #[inline]
    pub(crate) fn hash(&self, encoded: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.key, encoded).as_bytes()
    }

    /// Identifies the key without revealing it, so a wrong key gets a clear error.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        self.hash(b"keyledger chain key fingerprint")
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// sled as the log: tree `log` maps a big-endian `u64` sequence number to a record.
pub(crate) struct SledLog {
    db: sled::Db,
    log: sled::Tree,
    /// sled's data file, to fsync: sled itself ends a flush with `sync_file_range`, which
    /// neither flushes the drive's write cache nor the file's size. `None` when temporary.
    data_file: Option<std::fs::File>,
}

/// Name of the tree that holds the records.
pub(crate) const LOG_TREE: &str = "log";
/// The version of the store's layout and metadata.
pub(crate) const STORE_FORMAT: u32 = 1;
const META_TREE: &str = "meta";
const META_FORMAT: &[u8] = b"format";
const META_CHAIN: &[u8] = b"chain";

/// How a store says its chain is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChainMarker {
    Public,
    /// Keyed, with the key's fingerprint.
    Keyed([u8; 32]),
}

impl ChainMarker {
    /// Why `chain` cannot check a log with this marker, if it cannot.
    pub(crate) fn mismatch(self, chain: &Chain) -> Option<&'static str> {
        match (self, chain.is_keyed()) {
            (ChainMarker::Public, false) => None,
            (ChainMarker::Keyed(f), true) if f == chain.fingerprint() => None,
            (ChainMarker::Keyed(_), true) => {
                Some("the chain key does not match the key this store was created with")
            }
            (ChainMarker::Keyed(_), false) => {
                Some("this store's log is chained with a secret key: supply it")
            }
            (ChainMarker::Public, true) => {
                Some("this store's log is not keyed: it was not written with this chain key")
            }
        }
    }
}

impl SledLog {
    /// Opens (or creates) the sled database at `path` with a small cache and no
    /// background flushing: the writer flushes before it acknowledges.
    pub(crate) fn open(path: Option<&Path>, cache_bytes: u64) -> Result<Self, Error> {
        let config = sled::Config::new()
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            // The log only appends, so sled's compaction-favouring default buys no space
            // here (measured: the same size at 100k records) and costs write throughput.
            .mode(sled::Mode::HighThroughput);
        let config = match path {
            Some(p) => {
                remove_unfinished_sled_snapshots(p)?;
                config.path(p)
            }
            None => config.temporary(true),
        };
        let db = open_retrying(&config)?;
        let log = db.open_tree(LOG_TREE)?;
        let data_file = path.map(|p| std::fs::File::open(p.join("db"))).transpose()?;
        if let Some(p) = path {
            // sled writes its `conf` without syncing it; make it and the files sled may
            // just have created part of the directory for good.
            std::fs::File::open(p.join("conf"))?.sync_all()?;
            std::fs::File::open(p)?.sync_all()?;
        }
        Ok(SledLog { db, log, data_file })
    }

    /// sled's flush, then an fsync of its data file (see `data_file`).
    fn sync(&self) -> Result<(), Error> {
        self.db.flush()?;
        if let Some(file) = &self.data_file {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Checks the store's format marker, writing it on a fresh store, and returns how the
    /// log's chain is keyed: `None` for a fresh store, else the stored marker.
    pub(crate) fn check_meta(&self, chain: &Chain) -> Result<Option<ChainMarker>, Error> {
        let meta = self.db.open_tree(META_TREE)?;
        let fresh = self.log.is_empty();
        match meta.get(META_FORMAT)? {
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_le_bytes)
                    .map_err(|_| Error::corrupt(0, "store format marker is not 4 bytes"))?;
                if found != STORE_FORMAT {
                    return Err(Error::UnsupportedVersion {
                        found,
                        supported: STORE_FORMAT,
                    });
                }
            }
            None if fresh => {}
            None => return Err(Error::corrupt(0, "log has records but no format marker")),
        }
        if fresh {
            let mut marker = vec![u8::from(chain.is_keyed())];
            if chain.is_keyed() {
                marker.extend_from_slice(&chain.fingerprint());
            }
            meta.insert(META_FORMAT, &STORE_FORMAT.to_le_bytes())?;
            meta.insert(META_CHAIN, marker)?;
            self.sync()?;
            return Ok(None);
        }
        let marker = meta
            .get(META_CHAIN)?
            .ok_or_else(|| Error::corrupt(0, "chain marker missing"))?;
        match marker.as_ref() {
            [0] => Ok(Some(ChainMarker::Public)),
            [1, fingerprint @ ..] if fingerprint.len() == 32 => {
                let mut f = [0u8; 32];
                f.copy_from_slice(fingerprint);
                Ok(Some(ChainMarker::Keyed(f)))
            }
            _ => Err(Error::corrupt(0, "chain marker is malformed")),
        }
    }
}

/// Removes every `snap.*.generating` file in sled's directory.
///
/// sled 0.34.7 writes a snapshot of its page table to `snap.<LSN>.generating`, syncs it and
/// renames it to `snap.<LSN>`. But when it opens, it lists every `snap.*` file (only
/// `*.in___motion` is skipped), sorts the names and reads the last one: a `.generating`
/// left by a kill mid-write sorts after the finished snapshot of the same LSN and is taken
/// as the newest, and an empty or partial one makes every later open fail with
/// `Corruption { at: None }`. A finished snapshot never keeps that name, so such a file is
/// always a leftover and is safe to remove (sled then uses the previous snapshot, or scans
/// its whole segment log).
pub(crate) fn remove_unfinished_sled_snapshots(dir: &Path) -> Result<(), Error> {
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
fn open_retrying(config: &sled::Config) -> Result<sled::Db, Error> {
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

fn seq_of(key: &[u8]) -> Result<u64, Error> {
    <[u8; 8]>::try_from(key).map(u64::from_be_bytes).map_err(|_| {
        Error::corrupt(
            0,
            format!("log key of {} bytes is not a sequence number", key.len()),
        )
    })
}

/// Key of the anchor in the log tree: shorter than a sequence number, so never one.
const ANCHOR_KEY: &[u8] = b"head";

impl Log for SledLog {
    fn append(&mut self, batch: &Batch<'_>) -> Result<(), Error> {
        let mut b = sled::Batch::default();
        if let Some(from) = batch.discard_from {
            for kv in self.log.range(from.to_be_bytes()..) {
                let key = kv?.0;
                if key.len() == 8 {
                    b.remove(key);
                }
            }
        }
        for (seq, bytes) in batch.records {
            b.insert(&seq.to_be_bytes(), bytes.as_slice());
        }
        match &batch.anchor {
            Some(anchor) => b.insert(ANCHOR_KEY, codec::encode_anchor(anchor)?),
            None => b.remove(ANCHOR_KEY),
        }
        self.log.apply_batch(b)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.sync()
    }

    fn anchor(&self) -> Result<Option<Anchor>, Error> {
        self.log
            .get(ANCHOR_KEY)?
            .map(|v| codec::decode_anchor(&v))
            .transpose()
    }

    fn scan(&self, seq: u64) -> Scan<'_> {
        Box::new(
            self.log
                .range(seq.to_be_bytes()..)
                .filter(|kv| !matches!(kv, Ok((k, _)) if k.as_ref() == ANCHOR_KEY))
                .map(|kv| {
                    let (k, v) = kv?;
                    Ok((seq_of(&k)?, v))
                }),
        )
    }
}
