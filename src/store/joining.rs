//! A fleet host's snapshots beyond its directory: the ones it publishes on the fleet's
//! shelf for new hosts ([`publish`]), the one a new host joins from ([`ShelfSource`]:
//! the fleet proves it against the stream, `fleet/replica/snapshot.rs`), and the history
//! under it that such a host fetches, then proves, in the background ([`history_job`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::chain::{Chain, Head};
use crate::file;
use crate::fleet::offline::Connect;
use crate::fleet::replica::history::{self, History};
use crate::fleet::replica::snapshot::SnapshotSource;
use crate::ledger::Ledger;
use crate::log::{HistoryWrite, LogRead, MetaKey, ShelfConnect};
use crate::model::error::Error;
use crate::persist::snapshot::format::{MAX_SNAPSHOT_BYTES, decode_snapshot};
use crate::persist::snapshot::{self, Seal};
use crate::projection::{Projection, SnapshotData};

/// The newest snapshot on the fleet's shelf, for a new host; see the module doc.
pub(super) struct ShelfSource {
    connect: ShelfConnect,
    path: PathBuf,
    chain: Chain,
    fetched: Option<(Vec<u8>, SnapshotData)>,
    /// The seal of the snapshot installed.
    pub(super) installed: Option<Seal>,
}

impl ShelfSource {
    /// A source that keeps the snapshot it installs at `path` (the store's snapshot file).
    pub(super) fn new(connect: ShelfConnect, path: &Path, chain: Chain) -> Self {
        ShelfSource {
            connect,
            path: path.to_path_buf(),
            chain,
            fetched: None,
            installed: None,
        }
    }
}

impl SnapshotSource for ShelfSource {
    fn fetch(&mut self) -> Option<Head> {
        let limit = usize::try_from(MAX_SNAPSHOT_BYTES + 32).unwrap_or(usize::MAX);
        let bytes = match (self.connect)().and_then(|mut shelf| shelf.newest(limit)) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                tracing::info!(target: "keyledger::fleet", "no published snapshot: this host replays the stream");
                return None;
            }
            Err(e) => {
                tracing::warn!(
                    target: "keyledger::fleet",
                    "the published snapshot could not be fetched ({e}): this host replays the stream"
                );
                return None;
            }
        };
        match decode_snapshot(&bytes, &self.chain) {
            Ok(data) if data.head.seq > 0 => {
                let head = data.head;
                self.fetched = Some((bytes, data));
                Some(head)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(
                    target: "keyledger::fleet",
                    "the published snapshot was refused ({e}): this host replays the stream"
                );
                None
            }
        }
    }

    fn install(&mut self, ledger: &Ledger) -> Result<(), Error> {
        let (bytes, data) = self.fetched.take().ok_or(Error::Closed)?;
        let seq = data.head.seq;
        let seal = snapshot::seal_of(seq, &bytes).ok_or(Error::Closed)?;
        // The file is written (and synced) while the state is built: both before the log
        // records that it joined from it.
        let (proj, written) = std::thread::scope(|s| {
            let written = s.spawn(|| file::write_atomically(&self.path, |out| Ok(out.write_all(&bytes)?)));
            let proj = Projection::from_snapshot(data);
            (proj, written.join())
        });
        written.map_err(|_| Error::Closed)??;
        *ledger.write_state() = proj?;
        self.installed = Some(seal);
        Ok(())
    }
}

/// Publishes the snapshot just saved at `path` (the state at record `seq`) on the shelf,
/// unless the one there claims to be as new (a claim past `plausible` is no genuine
/// snapshot's, and is replaced: whoever may write the bucket cannot stop publishing by
/// claiming a huge record). A failure costs new hosts a longer replay, nothing else:
/// logged.
pub(super) fn publish(connect: &ShelfConnect, path: &Path, seq: u64, plausible: u64) {
    let published = (|| {
        let mut shelf = connect()?;
        // An info that cannot be read is replaced too.
        if shelf
            .newest_seq()
            .ok()
            .flatten()
            .is_some_and(|newest| newest >= seq && newest <= plausible)
        {
            return Ok(false);
        }
        shelf.put(seq, path)?;
        Ok::<_, crate::log::LogError>(true)
    })();
    match published {
        Ok(true) => tracing::info!(target: "keyledger::snapshot", seq, "snapshot published for new hosts"),
        Ok(false) => {}
        Err(e) => tracing::warn!(
            target: "keyledger::snapshot",
            seq,
            "snapshot not published (new hosts replay more of the stream): {e}"
        ),
    }
}

/// What the verifier does first on a host that joined from a snapshot: fetch the history
/// under it into the local log (from where a restart left it, `state`), with `fetch`; once
/// the verifier proved it, `done` records that nothing is missing.
///
/// `witness`: the store's `expect_head` when it lies in that history, with a reader of the
/// log: checked before `done`, a mismatch failing the store closed as a damaged history.
pub(super) fn history(
    mut connect: Connect,
    (mut fetch, mut done): (Box<dyn HistoryWrite>, Box<dyn HistoryWrite>),
    chain: Chain,
    state: History,
    witness: Option<(crate::chain::Witness, Box<dyn LogRead>)>,
) -> super::background::History {
    let witness_chain = chain.clone();
    super::background::History {
        fetch: Box::new(move |cancel: &AtomicBool| {
            let fetched = history::fetch(&mut connect, &mut *fetch, &chain, state, cancel)?;
            if fetched {
                tracing::info!(
                    target: "keyledger::fleet",
                    records = state.first - 1,
                    "the history under the snapshot was fetched; verifying it"
                );
            }
            Ok(fetched)
        }),
        done: Box::new(move || {
            if let Some((w, log)) = &witness
                && crate::ledger::record_hash(&**log, &witness_chain, w.seq)? != Some(w.hash)
            {
                return Err(Error::WitnessMismatch {
                    expected_seq: w.seq,
                    reason: format!(
                        "record {} is not the one the witness names: the stream's history was forked or replaced",
                        w.seq
                    ),
                });
            }
            Ok(done.write(&[], None)?)
        }),
    }
}

/// Refuses a store that does not hold its whole history yet (it joined its fleet from a
/// snapshot and still fetches what lies under it): `check`, `repair` and `export` read
/// every record.
pub(super) fn history_held(log: &dyn LogRead) -> Result<(), Error> {
    match log.meta(MetaKey::History)? {
        None => Ok(()),
        Some(bytes) => Err(Error::HistoryIncomplete {
            first: History::decode(&bytes).map_or(1, |h| h.first),
        }),
    }
}

/// Whether a store whose history under the snapshot it joined from is still to fetch can
/// open: from that snapshot (`loaded`), in its fleet (`fleet`).
pub(super) fn history_openable(history: History, loaded: bool, fleet: bool) -> Result<(), Error> {
    if !loaded {
        return Err(Error::corrupt(
            history.first,
            crate::model::problem::ProblemKind::Snapshot,
            format!(
                "this host joined its fleet from a snapshot and has not fetched the records before {} yet, \
                 and its snapshot file is missing or does not fit its log: empty the directory and start \
                 the host again to join anew",
                history.first
            ),
        ));
    }
    if !fleet {
        return Err(Error::invalid(
            "fleet",
            format!(
                "this store joined its fleet from a snapshot and still fetches the records before {} from \
                 the stream: open it with the fleet's options (--nats)",
                history.first
            ),
        ));
    }
    Ok(())
}
