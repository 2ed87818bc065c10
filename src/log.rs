//! The append-only log: where records become durable, and the hash chain that links them.
//!
//! [`Log`] is the small seam between the store and its storage engine (sled here; a fault
//! injector in tests; a shared log later). A log only appends and reads back; it never
//! interprets records and never rewrites an acknowledged one.

use std::path::Path;

use crate::Error;

/// Stored bytes of one record, as the engine hands them back.
pub(crate) type Bytes = sled::IVec;

/// Records from a sequence number on, in order.
pub(crate) type Scan<'a> = Box<dyn Iterator<Item = Result<(u64, Bytes), Error>> + 'a>;

/// Where records are kept.
pub(crate) trait Log: Send {
    /// Writes a batch of records with consecutive sequence numbers, all or none. They are
    /// durable only after [`Log::flush`] succeeds.
    fn append(&mut self, batch: &[(u64, Vec<u8>)]) -> Result<(), Error>;

    /// Makes every appended record durable.
    fn flush(&mut self) -> Result<(), Error>;

    /// Drops records from `seq` on that were appended but never acknowledged because a
    /// later step failed; the next batch reuses their sequence numbers.
    fn discard_from(&mut self, seq: u64) -> Result<(), Error>;

    /// Reads records from `seq` on.
    fn scan(&self, seq: u64) -> Scan<'_>;
}

/// The chain's hash function: blake3 keyed with either a public constant (anyone can
/// recompute the chain) or a secret chain key (only its holder can).
#[derive(Clone)]
pub(crate) struct Chain {
    key: [u8; 32],
}

const PUBLIC_CHAIN_KEY: &[u8; 32] = b"keyledger.log-chain.blake3.v1.26";

impl Chain {
    pub(crate) fn public() -> Self {
        Chain {
            key: *PUBLIC_CHAIN_KEY,
        }
    }

    /// The chain hash of a record, given its encoded bytes (which hold the previous hash).
    #[inline]
    pub(crate) fn hash(&self, encoded: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.key, encoded).as_bytes()
    }
}

/// sled as the log: tree `log` maps a big-endian `u64` sequence number to a record.
pub(crate) struct SledLog {
    db: sled::Db,
    log: sled::Tree,
}

/// Name of the tree that holds the records.
pub(crate) const LOG_TREE: &str = "log";

impl SledLog {
    /// Opens (or creates) the sled database at `path` with a small cache and no
    /// background flushing: the writer flushes before it acknowledges.
    pub(crate) fn open(path: Option<&Path>, cache_bytes: u64) -> Result<Self, Error> {
        let config = sled::Config::new()
            .cache_capacity(cache_bytes)
            .flush_every_ms(None);
        let config = match path {
            Some(p) => config.path(p),
            None => config.temporary(true),
        };
        let db = config.open()?;
        let log = db.open_tree(LOG_TREE)?;
        Ok(SledLog { db, log })
    }

    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
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

impl Log for SledLog {
    fn append(&mut self, batch: &[(u64, Vec<u8>)]) -> Result<(), Error> {
        let mut b = sled::Batch::default();
        for (seq, bytes) in batch {
            b.insert(&seq.to_be_bytes(), bytes.as_slice());
        }
        self.log.apply_batch(b)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.db.flush()?;
        Ok(())
    }

    fn discard_from(&mut self, seq: u64) -> Result<(), Error> {
        let mut b = sled::Batch::default();
        for kv in self.log.range(seq.to_be_bytes()..) {
            b.remove(kv?.0);
        }
        self.log.apply_batch(b)?;
        Ok(())
    }

    fn scan(&self, seq: u64) -> Scan<'_> {
        Box::new(self.log.range(seq.to_be_bytes()..).map(|kv| {
            let (k, v) = kv?;
            Ok((seq_of(&k)?, v))
        }))
    }
}
