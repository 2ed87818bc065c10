//! Opening a store: [`Builder`] and its options; the store's directory (its lock, its log,
//! what a killed process left); `check`, `repair` and `import`, which work on a closed
//! store; and `KeyStore::start`, which replays the log and starts the writer and the
//! background threads. Nothing here runs once a store is open: it never takes a command.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::chain::Chain;
use crate::chain::ChainKey;
use crate::chain::Witness;
use crate::clock::Clock;
use crate::clock::ManualClock;
use crate::codec;
use crate::file;
use crate::fleet::fence::Fence;
use crate::fleet::hosts::Fleet;
use crate::fleet::offline::{Connect, Rejoin};
use crate::fleet::replica::Replica;
use crate::ledger;
use crate::ledger::Ledger;
use crate::ledger::meta::LogInfo;
use crate::log::Batch;
use crate::log::Log;
use crate::log::LogRead;
use crate::log::SharedLog;
use crate::log::memory::MemLog;
use crate::log::sled::SledLog;
use crate::model::error::Error;
use crate::model::problem::Problem;
use crate::model::problem::Progress;
use crate::persist::backup;
use crate::persist::check;
use crate::persist::check::CheckInputs;
use crate::persist::check::CheckReport;
use crate::persist::check::RepairReport;
use crate::persist::snapshot;
use crate::persist::trail;

use super::background::{IntegrityCell, LAST_USED_FILE, LastUsed, Snapshots, spawn_verifier};
use super::credits::{CREDITS_FILE, CreditCounts};
use super::joining::{self, ShelfSource};
use super::stats::Stats;
use super::writer::Writer;
use super::{Integrity, KeyStore};
use crate::fleet::replica::history::History;
use crate::fleet::replica::snapshot::SnapshotSource;
use crate::log::MetaKey;

const LOCK_FILE: &str = "keyledger.lock";
const LOG_DIR: &str = "log";

/// Options for opening a store; see [`KeyStore::builder`].
#[derive(Clone)]
pub struct Builder {
    cache_bytes: u64,
    require_whitelist: bool,
    max_batch: usize,
    chain_key: Option<ChainKey>,
    progress: Progress,
    create_if_missing: bool,
    snapshot_every: u64,
    expect_head: Option<Witness>,
    clock: Option<ManualClock>,
    keep_refused: u64,
    save_last_used_every: Duration,
    save_credits_every: Duration,
    statistics: bool,
    #[cfg(feature = "nats")]
    fleet: Option<crate::fleet::FleetOptions>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("Builder");
        f.field("cache_bytes", &self.cache_bytes)
            .field("require_whitelist", &self.require_whitelist)
            .field("max_batch", &self.max_batch)
            .field("chain_key", &self.chain_key)
            .field("snapshot_every", &self.snapshot_every)
            .field("expect_head", &self.expect_head)
            .field("clock", &self.clock)
            .field("keep_refused", &self.keep_refused)
            .field("save_last_used_every", &self.save_last_used_every)
            .field("save_credits_every", &self.save_credits_every)
            .field("statistics", &self.statistics);
        #[cfg(feature = "nats")]
        f.field("fleet", &self.fleet);
        f.finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            cache_bytes: 8 << 20,
            require_whitelist: false,
            max_batch: 1024,
            chain_key: None,
            progress: None,
            create_if_missing: true,
            snapshot_every: 100_000,
            expect_head: None,
            clock: None,
            keep_refused: trail::DEFAULT_KEEP,
            save_last_used_every: Duration::from_secs(60),
            save_credits_every: Duration::from_secs(1),
            statistics: true,
            #[cfg(feature = "nats")]
            fleet: None,
        }
    }
}

/// Whether `dir` holds a store (its log).
fn is_store(dir: &Path) -> bool {
    SledLog::exists(&dir.join(LOG_DIR))
}

/// Whether `dir` is a directory with nothing in it but, maybe, what an interrupted first
/// open of a store leaves: the lock file, and a log directory whose engine never wrote
/// its database (sled writes its `conf` first and unsynced, so a kill can leave it torn).
fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).all(|e| {
            let name = e.file_name();
            name == LOCK_FILE || (name == LOG_DIR && !SledLog::exists(&e.path()))
        })
    })
}

impl Builder {
    /// sled's page cache, in bytes (default 8 MiB; sled's own default is 1 GiB). Reads
    /// never use it: it serves the writer and the replay at open.
    pub fn cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Refuse keys whose whitelist is empty instead of admitting every address.
    pub fn require_whitelist(mut self, yes: bool) -> Self {
        self.require_whitelist = yes;
        self
    }

    /// Most commands made durable by one sync (default 1024).
    pub fn max_batch(mut self, commands: usize) -> Self {
        self.max_batch = commands.max(1);
        self
    }

    /// Chains the log with a secret key kept outside the store, so that whoever can write
    /// the database but lacks the key can neither forge a history nor roll its head back
    /// without [`Builder::check`] noticing. A store is keyed from its creation on and must
    /// always be opened with the same key.
    pub fn chain_key(mut self, key: ChainKey) -> Self {
        self.chain_key = Some(key);
        self
    }

    /// Saves a snapshot of the projections every `records` records (default 100,000), so
    /// that opening replays only the log's tail; 0 turns snapshots off (no saving, no
    /// loading). A snapshot that does not fit the log is ignored.
    pub fn snapshot_every(mut self, records: u64) -> Self {
        self.snapshot_every = records;
        self
    }

    /// Whether [`Builder::open`] creates a store that does not exist (default true).
    /// [`Builder::check`] and [`Builder::repair`] never do.
    pub fn create_if_missing(mut self, yes: bool) -> Self {
        self.create_if_missing = yes;
        self
    }

    /// The head the log must reach or pass, kept outside the store (see
    /// [`KeyStore::head`]): [`Builder::open`] refuses, and [`Builder::check`] reports, a
    /// log that ends before it or does not contain it. On a host of a fleet
    /// ([`Builder::fleet`]) the log is checked once it has caught up with the stream, so a
    /// new host from an empty directory refuses a stream rolled back past the witness.
    pub fn expect_head(mut self, witness: Witness) -> Self {
        self.expect_head = Some(witness);
        self
    }

    /// Calls `f(records done, records in all)` from time to time while a log is replayed
    /// or checked, for a progress bar.
    pub fn on_progress(mut self, f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Runs the store on `clock` instead of the system clock: record times, expiry,
    /// grace periods and last-used stamps all read it. For tests and simulations.
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How many refused commands the security trail keeps (default 10,000); the oldest
    /// are dropped first. See [`KeyStore::refused`].
    pub fn keep_refused(mut self, attempts: u64) -> Self {
        self.keep_refused = attempts.max(1);
        self
    }

    /// How often each key's last-used time is saved to the store's directory (default
    /// every minute, at most every 10 ms, and always when the store closes), on a thread of
    /// its own. After a crash it is at most this stale.
    pub fn save_last_used_every(mut self, every: Duration) -> Self {
        self.save_last_used_every = every;
        self
    }

    /// How often what credited keys spent is saved to the store's directory (default every
    /// second, at most every 10 ms, and always when the store closes), on a thread of its
    /// own. A crash forgets what was spent since the last save, so a key may spend that
    /// much again: see [`NewKey::credits`](crate::model::key::NewKey::credits).
    pub fn save_credits_every(mut self, every: Duration) -> Self {
        self.save_credits_every = every;
        self
    }

    /// Whether the store counts what [`KeyStore::statistics`] reads out (default yes):
    /// the decisions of `/auth` and `ApiKeyLayer` with their latency (per request, the
    /// clock read at its start and end and three atomic adds on a cache line of the
    /// thread's own), the writer's batches, syncs, snapshots and saves. Off, none of it is
    /// counted or timed.
    pub fn statistics(mut self, yes: bool) -> Self {
        self.statistics = yes;
        self
    }

    /// Makes this store one host of a fleet (feature `nats`): its log becomes a replica
    /// of a NATS JetStream stream that every host appends to and follows, and revocations
    /// return once every host that may accept keys has applied them. Needs [`Builder::chain_key`], the same
    /// on every host. On an empty stream, the store's log is published as its beginning
    /// (how a fleet is bootstrapped); a store joining a stream that holds records must be
    /// empty or a prefix of it. Only [`Builder::open`] takes part in a fleet.
    ///
    /// A host whose shared log is out of reach at open starts from its local store if the
    /// fleet heard it before (the store keeps when): it verifies keys under its staleness
    /// limits counted from then, reports itself stale, refuses writes with
    /// [`Error::FleetNotJoined`], and joins as soon as the shared log answers. Without such
    /// a record (an empty directory), `open` fails with [`Error::StreamUnavailable`].
    #[cfg(feature = "nats")]
    pub fn fleet(mut self, options: crate::fleet::FleetOptions) -> Self {
        self.fleet = Some(options);
        self
    }

    pub(super) fn chain(&self) -> Chain {
        Chain::new(self.chain_key.as_ref())
    }

    /// Checks the fleet's options, if this store is to join one.
    fn check_fleet(&self) -> Result<(), Error> {
        #[cfg(feature = "nats")]
        if let Some(options) = &self.fleet {
            options.validated()?;
            if self.chain_key.is_none() {
                return Err(Error::invalid(
                    "chain key",
                    "a fleet needs the chain key all its hosts share",
                ));
            }
        }
        Ok(())
    }

    /// The shared log this store is to join, connected if it answers; `None` for a single
    /// host. The options were checked ([`Builder::check_fleet`]).
    fn shared(&self) -> Result<Option<SharedParts>, Error> {
        #[cfg(feature = "nats")]
        if let Some(options) = &self.fleet {
            let fleet = Fleet::new(options.clone(), self.chain());
            let connection = options.connection();
            let connector = move |serves: bool| -> Connect {
                let mut connection = connection.clone();
                if !serves {
                    connection.serves = None;
                }
                Box::new(move || {
                    let log = crate::log::nats::NatsLog::connect(&connection)?;
                    Ok(Box::new(log) as Box<dyn SharedLog>)
                })
            };
            let mut connect = connector(true);
            let shelf_connection = options.connection();
            let shelf: crate::log::ShelfConnect = Arc::new(move || {
                let shelf = crate::log::nats::NatsShelf::connect(&shelf_connection)?;
                Ok(Box::new(shelf) as Box<dyn crate::log::SnapshotShelf>)
            });
            let log = match connect() {
                Ok(log) => Ok(log),
                // Out of reach: a host with a replica starts from it (see `Rejoin`).
                Err(Error::StreamUnavailable { reason }) => Err(reason),
                Err(e) => return Err(e),
            };
            return Ok(Some(SharedParts {
                log,
                connect,
                // Reads only: takes no forwarded writes.
                history: connector(false),
                shelf,
                fence: fleet.fence(),
                fleet,
            }));
        }
        Ok(None)
    }

    /// Opens the store in directory `path`, creating it if needed (in a directory that
    /// does not exist or is empty), and rebuilds the projections by replaying the log.
    ///
    /// # Errors
    /// [`Error::Locked`] if another process has it open; [`Error::NotAStore`] for a
    /// directory that holds something else (or nothing, when not creating);
    /// [`Error::Corrupt`] or [`Error::UnsupportedVersion`] if the log does not replay to
    /// its head (what follows the head can be removed with [`Builder::repair`]);
    /// [`Error::ChainKeyMismatch`]; [`Error::WitnessMismatch`] if it does not reach
    /// [`Builder::expect_head`]; [`Error::UnsafeFile`] for a link, a FIFO or a device
    /// planted in its directory; [`Error::Io`] or [`Error::Storage`] if the disk fails.
    pub fn open(self, path: impl AsRef<Path>) -> Result<KeyStore, Error> {
        let dir = path.as_ref();
        // Wrong options are refused before the directory is created or locked.
        self.check_fleet()?;
        let (log, lock, info) = self.open_log(dir, self.create_if_missing)?;
        let shared = self.shared()?;
        KeyStore::start(self, Box::new(log), info, Some((dir.to_path_buf(), lock)), shared)
    }

    /// Opens a store held in memory, gone when dropped.
    ///
    /// # Errors
    /// As [`Builder::open`].
    pub fn open_temporary(self) -> Result<KeyStore, Error> {
        let mut log = MemLog::default();
        let info = ledger::initialize(&mut log, &self.chain())?;
        KeyStore::start(self, Box::new(log), info, None, None)
    }

    /// Reads the whole log of the store at `path` and reports every way it fails to prove
    /// its history: sequence gaps, edited, inserted, removed and reordered records, a
    /// broken hash chain, a head that is missing, forged or does not match, records that
    /// break the access rules, a snapshot that disagrees with the log, and a log that does
    /// not reach [`Builder::expect_head`]. Writes nothing.
    ///
    /// # Errors
    /// [`Error::NotAStore`], [`Error::Locked`], [`Error::ChainKeyMismatch`],
    /// [`Error::UnsafeFile`] (a planted `snapshot` is a problem in the report instead),
    /// [`Error::HistoryIncomplete`] (a fleet host still fetching the history under the
    /// snapshot it joined from), [`Error::Io`] or [`Error::Storage`]: the check could not run. Damage is reported
    /// in the [`CheckReport`], not as an error.
    pub fn check(self, path: impl AsRef<Path>) -> Result<CheckReport, Error> {
        let dir = path.as_ref();
        let chain = self.chain();
        let (log, _lock) = self.open_existing(dir)?;
        let info = match ledger::read_info(&log) {
            Ok(Some(info)) => info,
            Ok(None) => {
                return Err(Error::NotAStore {
                    path: dir.to_path_buf(),
                });
            }
            Err(Error::Corrupt { seq, kind, reason }) => {
                return Ok(CheckReport {
                    records: 0,
                    keyed: chain.is_keyed(),
                    problems: vec![Problem {
                        seq,
                        kind,
                        detail: reason,
                    }],
                    unlisted: 0,
                });
            }
            Err(e) => return Err(e),
        };
        ledger::chain_fits(info, &chain)?;
        joining::history_held(&log)?;
        let snapshot = (self.snapshot_every > 0).then(|| dir.join(snapshot::SNAPSHOT_FILE));
        let inputs = CheckInputs {
            snapshot: snapshot.as_deref(),
            witness: self.expect_head,
        };
        check::check(&log, &chain, info, &inputs, &self.progress)
    }

    /// Removes what follows the head of the store at `path`: records that were never
    /// acknowledged, which keep it from opening. Says what it removed.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if there is no sealed head, or if anything the head covers is
    /// damaged (repair never removes acknowledged history), [`Error::UnsupportedVersion`]
    /// for records of a newer format; [`Error::NotAStore`], [`Error::Locked`],
    /// [`Error::ChainKeyMismatch`] and storage errors.
    pub fn repair(self, path: impl AsRef<Path>) -> Result<RepairReport, Error> {
        let dir = path.as_ref();
        let chain = self.chain();
        let (mut log, _lock) = self.open_existing(dir)?;
        let info = ledger::read_info(&log)?.ok_or_else(|| Error::NotAStore {
            path: dir.to_path_buf(),
        })?;
        ledger::chain_fits(info, &chain)?;
        joining::history_held(&log)?;
        check::repair(&mut log, &chain, info)
    }

    /// Imports a backup made by [`KeyStore::export`] into the store at `path`, which must
    /// hold no record (it is created if the directory does not exist or is empty), giving
    /// the same records, state and hash chain. The whole file is checked before anything
    /// is written, streaming with bounded memory; if the import fails, the directory is
    /// left as it was. A keyed backup needs the same [`Builder::chain_key`]. Returns the
    /// number of records.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a damaged or foreign file or a store with records;
    /// [`Error::ChainKeyMismatch`]; [`Error::Corrupt`] for records that do not replay;
    /// [`Error::NotAStore`], [`Error::Locked`] and storage errors.
    pub fn import(self, path: impl AsRef<Path>, backup: impl AsRef<Path>) -> Result<u64, Error> {
        let dir = path.as_ref();
        let chain = self.chain();
        let existed = dir.exists();
        let had_store = is_store(dir);
        if existed && !had_store && !is_empty_dir(dir) {
            return Err(Error::NotAStore {
                path: dir.to_path_buf(),
            });
        }
        if had_store {
            // Refuse a store with records before reading the backup at all.
            let (log, _lock) = self.open_existing(dir)?;
            refuse_records(&log)?;
        }
        let checked = backup::check(backup.as_ref(), &chain)?;
        let mut written = false;
        let result = (|| {
            let (mut log, _lock, info) = self.open_log(dir, true)?;
            ledger::chain_fits(info, &chain)?;
            refuse_records(&log)?;
            let genesis = log.head()?.unwrap_or_default();
            written = true;
            let imported = backup::write(&mut log, &chain, backup.as_ref(), &checked, &genesis);
            if imported.is_err() {
                let _ = log.write(&Batch {
                    discard_from: Some(1),
                    entries: &[],
                    head: &genesis,
                });
                let _ = log.sync();
            }
            imported
        })();
        if result.is_err() && written && !had_store {
            // Leave the directory as it was: nothing, or empty.
            if existed {
                let _ = std::fs::remove_dir_all(dir.join(LOG_DIR));
                let _ = std::fs::remove_file(dir.join(LOCK_FILE));
            } else {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        result
    }

    /// Opens (or creates) the store's log, locked, with its metadata checked.
    pub(super) fn open_log(&self, dir: &Path, create: bool) -> Result<(SledLog, File, LogInfo), Error> {
        let not_a_store = || Error::NotAStore {
            path: dir.to_path_buf(),
        };
        let fresh = !is_store(dir);
        if fresh && !(create && (!dir.exists() || is_empty_dir(dir))) {
            return Err(not_a_store());
        }
        if !dir.exists() {
            file::create_private_dir(dir)?;
        }
        let lock = lock_dir(dir)?;
        let log_dir = dir.join(LOG_DIR);
        file::check_tree(&log_dir)?;
        if fresh {
            SledLog::discard_unfinished(&log_dir)?;
            file::create_private_dir(&log_dir)?;
        }
        remove_leftovers(dir);
        let mut log = SledLog::open(&log_dir, self.cache_bytes, fresh)?;
        let info = match ledger::read_info(&log)? {
            Some(info) => info,
            None if create => ledger::initialize(&mut log, &self.chain())?,
            None => return Err(not_a_store()),
        };
        ledger::chain_fits(info, &self.chain())?;
        Ok((log, lock, info))
    }

    /// Opens an existing store's log, locked, without writing anything.
    fn open_existing(&self, dir: &Path) -> Result<(SledLog, File), Error> {
        if !is_store(dir) {
            return Err(Error::NotAStore {
                path: dir.to_path_buf(),
            });
        }
        let lock = lock_dir(dir)?;
        file::check_tree(&dir.join(LOG_DIR))?;
        let log = SledLog::open(&dir.join(LOG_DIR), self.cache_bytes, false)?;
        Ok((log, lock))
    }
}

/// Refuses a log that holds records.
fn refuse_records(log: &dyn LogRead) -> Result<(), Error> {
    if log.scan(0).next().is_some() || log.meta(MetaKey::History)?.is_some() {
        return Err(Error::invalid(
            "store",
            "import needs a store without records; this one has some",
        ));
    }
    Ok(())
}

/// Takes the store's lock, waiting a moment for it: a store just closed by this process
/// can still be locked by a child it is spawning (between `fork` and `exec` the child
/// shares the lock), which lets go within milliseconds.
fn lock_dir(dir: &Path) -> Result<File, Error> {
    file::check_store_dir(dir)?;
    let file = file::open_lock(&dir.join(LOCK_FILE))?;
    let mut wait = std::time::Duration::from_millis(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if wait < LOCK_PATIENCE => {
                std::thread::sleep(wait);
                wait *= 2;
            }
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::Io(e)),
        }
    }
}

/// Removes what writes of the snapshot and the last-used stamps left when a process died;
/// never read.
fn remove_leftovers(dir: &Path) {
    file::remove_leftovers(dir, &[snapshot::SNAPSHOT_FILE, LAST_USED_FILE, CREDITS_FILE]);
}

/// How long opening waits for a busy lock before it says `Locked`.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(200);

/// What a host of a fleet starts with: the shared log, connected (or why it could not
/// be), how to connect to it again, and what the hosts know of each other.
pub(super) struct SharedParts {
    pub(super) log: Result<Box<dyn SharedLog>, String>,
    pub(super) connect: Connect,
    /// Another connection, for the history under a snapshot this host joined from.
    pub(super) history: Connect,
    /// The fleet's snapshot shelf.
    pub(super) shelf: crate::log::ShelfConnect,
    pub(super) fleet: Arc<Fleet>,
    pub(super) fence: Arc<Fence>,
}

impl KeyStore {
    /// Replays `log` (from a snapshot if one fits), checks it reaches its head and the
    /// witness, and starts the writer on it.
    pub(super) fn start(
        options: Builder,
        mut log: Box<dyn Log>,
        info: LogInfo,
        dir: Option<(PathBuf, File)>,
        shared: Option<SharedParts>,
    ) -> Result<Self, Error> {
        let chain = options.chain();
        let (dir, lock) = dir.unzip();
        let stored = ledger::stored_head(&*log, &chain, info)?;
        let total = stored.map_or(0, |s| s.seq());
        let snapshot_path = dir
            .as_ref()
            .filter(|_| options.snapshot_every > 0)
            .map(|d| d.join(snapshot::SNAPSHOT_FILE));
        let loaded = snapshot_path
            .as_deref()
            .map(|p| snapshot::load(p, &*log, &chain))
            .transpose()?
            .flatten()
            .filter(|(_, seal)| seal.seq <= total);
        let clock = Arc::new(match &options.clock {
            Some(manual) => Clock::manual(manual.clone()),
            None => Clock::system(),
        });
        // A host that joined from a snapshot and has not fetched the history under it yet
        // opens from that snapshot, or not at all: its log starts there.
        let pending = log
            .meta(MetaKey::History)?
            .filter(|_| total > 0)
            .map(|bytes| {
                History::decode(&bytes).ok_or_else(|| {
                    Error::corrupt(
                        0,
                        crate::model::problem::ProblemKind::Undecodable,
                        "the record of the history still to fetch from the stream is not one this build reads",
                    )
                })
            })
            .transpose()?;
        if let Some(history) = pending {
            joining::history_openable(history, loaded.is_some(), shared.is_some())?;
        }
        let (proj, mut seal) = match loaded {
            Some((proj, seal)) => (proj, Some(seal)),
            None => (crate::projection::Projection::new(), None),
        };
        let ledger = Ledger::from_projection(proj, chain.clone(), clock);
        ledger.replay(&*log, u64::MAX, total, &options.progress)?;
        ledger::reaches_head(stored, ledger.head())?;
        // A host that joins checks the witness once it has caught up with the stream: a new
        // host (from an empty directory) that joins a stream rolled back past the witness
        // refuses to start. One that starts without the shared log checks its replica.
        let joining = shared.as_ref().is_some_and(|parts| parts.log.is_ok());
        // A witness in the history a host still fetches (it joined from a snapshot) is
        // checked once that history is here, by the verifier.
        let deferred = options
            .expect_head
            .filter(|w| pending.is_some_and(|h| w.seq > 0 && w.seq < h.first));
        if let Some(witness) = options.expect_head.filter(|_| deferred.is_none())
            && !joining
        {
            ledger::reaches_witness(&*log, &chain, ledger.head(), witness)?;
        }
        let shelf = shared.as_ref().map(|parts| Arc::clone(&parts.shelf));
        let mut history = None;
        let (replica, rejoin, fleet, rejecting) = match shared {
            Some(SharedParts {
                log: Ok(shared),
                fleet,
                fence,
                history: connect,
                shelf,
                ..
            }) => {
                // A new host joins from the newest published snapshot the stream proves;
                // not with a witness to reach, which may lie in the history it skips.
                let mut source = snapshot_path
                    .as_deref()
                    .filter(|_| total == 0 && options.expect_head.is_none())
                    .map(|path| ShelfSource::new(shelf, path, chain.clone()));
                let replica = Replica::join(
                    shared,
                    Arc::clone(&fleet),
                    &mut *log,
                    &ledger,
                    source.as_mut().map(|s| s as &mut dyn SnapshotSource),
                )?;
                if let Some(witness) = options.expect_head.filter(|_| deferred.is_none()) {
                    ledger::reaches_witness(&*log, &chain, ledger.head(), witness)?;
                }
                if let Some(installed) = source.and_then(|s| s.installed) {
                    seal = Some(installed);
                }
                let state = replica.history().or(pending);
                history = state.map(|state| (connect, state));
                (Some(replica), None, Some(fleet), fence)
            }
            Some(SharedParts {
                log: Err(why),
                connect,
                history: history_connect,
                fleet,
                fence,
                ..
            }) => {
                history = pending.map(|state| (history_connect, state));
                let rejoin = Rejoin::start(Arc::clone(&fleet), connect, why, &*log, &ledger)?;
                (None, Some(rejoin), Some(fleet), fence)
            }
            None => (None, None, None, Arc::new(Fence::open())),
        };
        let last_used = dir
            .as_ref()
            .map(|d| LastUsed::load(d.join(LAST_USED_FILE), &ledger, options.save_last_used_every))
            .transpose()?;
        let credit_counts = dir
            .as_ref()
            .map(|d| CreditCounts::load(d.join(CREDITS_FILE), &ledger, options.save_credits_every))
            .transpose()?;
        let ledger = Arc::new(ledger);
        let stats = Stats::new(options.statistics);
        let mut replica = replica;
        if let Some(replica) = replica.as_mut() {
            replica.share_usage(Arc::clone(&ledger))?;
        }
        let last_used = last_used
            .map(|l| l.spawn(Arc::clone(&ledger), Arc::clone(&stats)))
            .transpose()?;
        let credit_counts = credit_counts.map(|c| c.spawn(Arc::clone(&ledger))).transpose()?;
        let integrity = IntegrityCell::new(match seal {
            Some(_) => Integrity::Verifying,
            None => Integrity::Verified,
        });
        let cancel = Arc::new(AtomicBool::new(false));
        let history = history
            .map(|(connect, state)| -> Result<_, Error> {
                let writers = (log.history_writer()?, log.history_writer()?);
                let witness = deferred.map(|w| (w, log.reader()));
                Ok(joining::history(connect, writers, chain.clone(), state, witness))
            })
            .transpose()?;
        let verifier = match seal {
            Some(seal) => Some(spawn_verifier(
                log.reader(),
                Arc::clone(&ledger),
                seal,
                Arc::clone(&integrity),
                Arc::clone(&cancel),
                history,
            )?),
            None => None,
        };
        let snapshots = snapshot_path
            .map(|path| {
                Snapshots::start(
                    snapshot::Policy {
                        path,
                        every: options.snapshot_every,
                        last: seal.map_or(0, |s| s.seq),
                    },
                    chain.clone(),
                    Arc::clone(&ledger),
                    Arc::clone(&stats),
                    Arc::clone(&integrity),
                    shelf.clone(),
                )
            })
            .transpose()?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let inbox: super::writer::Inbox = Arc::new(std::sync::Mutex::new(Some(tx.clone())));
        let forwarding = super::forwarding::Forwarding::default();
        if let Some(replica) = replica.as_mut() {
            replica.serve_writes(
                chain.clone(),
                super::writer::submitter(Arc::clone(&inbox)),
                forwarding.hearer(),
            )?;
        }
        let trail = log.reader();
        let writer = Writer {
            keep_refused: options.keep_refused,
            log: stats.timed(log),
            ledger: Arc::clone(&ledger),
            max_batch: options.max_batch,
            unacknowledged_from: None,
            upgrade: info.format < codec::STORE_FORMAT,
            snapshots,
            integrity: Arc::clone(&integrity),
            ids: StdRng::try_from_os_rng().map_err(|e| Error::Entropy(e.to_string()))?,
            replica,
            rejoin,
            appended_at: 0,
            inbox: Arc::clone(&inbox),
            forwarding,
            stats: Arc::clone(&stats),
        };
        let handle = std::thread::Builder::new()
            .name("keyledger-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(KeyStore {
            ledger,
            trail,
            require_whitelist: options.require_whitelist,
            integrity,
            tx: Some(tx),
            inbox,
            writer: Some(handle),
            last_used,
            credit_counts,
            verifier,
            cancel,
            dir,
            from_snapshot: seal.is_some(),
            fleet,
            rejecting,
            stats,
            _lock: lock,
        })
    }
}
