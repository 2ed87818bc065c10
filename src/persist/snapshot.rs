//! Projection snapshots: the in-memory state written to a file every so many records, so
//! that opening a large store replays only the tail of the log.
//!
//! A snapshot is derived data and is never trusted over the log. Open uses it only if its
//! seal verifies and the log's record at its sequence number has its chain hash, then
//! verifies the prefix it stands for in the background ([`verify_prefix`]); `check`
//! compares it with its own replay. It never changes the log. A snapshot file that is a
//! link or not a regular file was planted, and is refused rather than skipped.

pub(crate) mod format;

use std::path::{Path, PathBuf};

use crate::chain::Chain;
use crate::file;
use crate::ledger;
use crate::ledger::Ledger;
use crate::log::LogRead;
use crate::model::error::Error;
use crate::model::problem::ProblemKind;
use crate::model::problem::Progress;
use crate::projection::Projection;
use crate::projection::SnapshotData;

/// File name of the snapshot in a store's directory.
pub(crate) const SNAPSHOT_FILE: &str = "snapshot";

/// Where and how often the writer saves snapshots.
pub(crate) struct Policy {
    pub(crate) path: PathBuf,
    /// Records between snapshots.
    pub(crate) every: u64,
    /// Sequence number of the last snapshot saved, asked for or loaded.
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

/// Which state a snapshot holds: its sequence number and seal (the chain's keyed hash of
/// its encoding, which is a function of the records alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seal {
    pub(crate) seq: u64,
    pub(crate) seal: [u8; 32],
}

/// Writes `data` as the store's snapshot (never a half file).
pub(crate) fn save(path: &Path, data: SnapshotData, chain: &Chain) -> Result<usize, Error> {
    let mut written = 0;
    file::write_atomically(path, |out| {
        written = crate::persist::snapshot::format::write_snapshot(&data, chain, out)?;
        Ok(())
    })?;
    Ok(written)
}

/// The seal at the end of an encoded snapshot.
pub(crate) fn seal_of(seq: u64, bytes: &[u8]) -> Option<Seal> {
    let seal = bytes.last_chunk::<32>()?;
    Some(Seal { seq, seal: *seal })
}

/// Rebuilds the state from the snapshot at `path`, if it fits the log: its seal verifies
/// and the log's record at its sequence number has the hash it names. The log's tail is
/// not replayed here.
///
/// # Errors
/// [`Error::UnsafeFile`] if `path` is a link or not a regular file: someone planted it.
/// A snapshot that cannot be read or does not fit is only `None`.
pub(crate) fn load(
    path: &Path,
    log: &dyn LogRead,
    chain: &Chain,
) -> Result<Option<(Projection, Seal)>, Error> {
    let Some(bytes) = read(path)? else {
        return Ok(None);
    };
    Ok((|| {
        let data = crate::persist::snapshot::format::decode_snapshot(&bytes, chain).ok()?;
        let head = data.head;
        if head.seq == 0 || ledger::record_hash(log, chain, head.seq).ok()?? != head.hash {
            return None;
        }
        let seal = seal_of(head.seq, &bytes)?;
        Some((Projection::from_snapshot(data).ok()?, seal))
    })())
}

/// The seal of the snapshot at `path`, if there is one whose seal verifies.
///
/// # Errors
/// As [`load`].
pub(crate) fn read_seal(path: &Path, chain: &Chain) -> Result<Option<Seal>, Error> {
    let Some(bytes) = read(path)? else {
        return Ok(None);
    };
    Ok(crate::persist::snapshot::format::decode_snapshot(&bytes, chain)
        .ok()
        .and_then(|data| seal_of(data.head.seq, &bytes)))
}

/// The snapshot file's bytes; `None` if there is none or it cannot be read.
fn read(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    // The snapshot's body, then its seal.
    match file::read_store_file(path, crate::persist::snapshot::format::MAX_SNAPSHOT_BYTES + 32) {
        Err(e @ Error::UnsafeFile { .. }) => Err(e),
        read => Ok(read.ok().flatten()),
    }
}

/// Whether `proj` is the state the snapshot sealed as `snap` holds.
pub(crate) fn matches(proj: &Projection, snap: &Seal, chain: &Chain) -> Result<bool, Error> {
    let bytes = crate::persist::snapshot::format::encode_snapshot(&proj.to_snapshot(), chain)?;
    Ok(proj.head().seq == snap.seq && seal_of(snap.seq, &bytes).is_some_and(|s| s == *snap))
}

/// Replays the log's records up to the snapshot's and checks that they give the state the
/// snapshot holds: what opening from a snapshot takes on trust, verified after the fact.
pub(crate) fn verify_prefix(
    log: &dyn LogRead,
    chain: &Chain,
    snap: Seal,
    progress: &Progress,
) -> Result<(), Error> {
    let ledger = Ledger::new(chain.clone());
    ledger.replay(log, snap.seq, snap.seq, progress)?;
    if ledger.head().seq != snap.seq {
        return Err(Error::corrupt(
            ledger.head().seq + 1,
            ProblemKind::Removed,
            format!("the log ends at record {} before its snapshot", ledger.head().seq),
        ));
    }
    if !matches(&ledger.read(), &snap, chain)? {
        return Err(Error::corrupt(
            snap.seq,
            ProblemKind::Snapshot,
            "the snapshot does not match the records before it: one of them, or the snapshot, was changed",
        ));
    }
    Ok(())
}
