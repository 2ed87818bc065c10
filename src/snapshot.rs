//! Projection snapshots: the in-memory state written to a file every so many records, so
//! that opening a large store replays only the tail of the log.
//!
//! A snapshot is derived data and is never trusted over the log: it is used only if its
//! seal verifies and the log's record at its sequence number has its chain hash;
//! otherwise it is ignored and the whole log is replayed. It never changes the log.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::check::{self, Progress};
use crate::codec;
use crate::log::{Chain, Log};
use crate::projection::Projection;

/// File name of the snapshot in a store's directory.
pub(crate) const SNAPSHOT_FILE: &str = "snapshot";

/// Where and how often the writer saves snapshots.
pub(crate) struct Policy {
    pub(crate) path: PathBuf,
    /// Records between snapshots.
    pub(crate) every: u64,
    /// Sequence number of the last snapshot saved or loaded.
    pub(crate) last: u64,
}

impl Policy {
    pub(crate) fn due(&self, head: u64) -> bool {
        head >= self.last + self.every
    }

    /// On shutdown, save if a tenth of the interval has passed, so the next open is fast
    /// without rewriting a large snapshot after every small session.
    pub(crate) fn due_at_close(&self, head: u64) -> bool {
        head > self.last && head >= self.last + (self.every / 10).max(1)
    }
}

/// Writes `proj` as the store's snapshot (write, fsync, rename: never a half file).
pub(crate) fn save(path: &Path, proj: crate::projection::SnapshotData, chain: &Chain) -> Result<(), Error> {
    let bytes = codec::encode_snapshot(proj, chain)?;
    let tmp = path.with_extension("partial");
    let mut file = File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Rebuilds the projection from the snapshot at `path` plus the log's tail, if the
/// snapshot fits the log; `None` if there is none or it does not fit.
pub(crate) fn load(path: &Path, log: &dyn Log, chain: &Chain, progress: &Progress) -> Option<Projection> {
    let bytes = std::fs::read(path).ok()?;
    let data = codec::decode_snapshot(&bytes, chain).ok()?;
    let head = data.head;
    if head.seq == 0 || log.anchor().ok()??.seq < head.seq {
        return None;
    }
    let (seq, record) = log.scan(head.seq).next()?.ok()?;
    if seq != head.seq || chain.hash(&record) != head.hash {
        return None;
    }
    let proj = Projection::from_snapshot(data).ok()?;
    check::replay_onto(proj, log, chain, progress).ok()
}
