//! The store: ties commands, the ledger, the log and the writer thread together.
//!
//! Data flows one way: a command is checked against the state and turned into records by
//! the ledger, made durable by the one writer thread (group commit), accepted by the ledger
//! (which applies it), and only then answered. Reads (`verify`, listings, audit) never
//! touch disk or wait for the writer.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, TryLockError};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use ipnet::IpNet;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::access::{Rejection, VerifiedKey};
use crate::chain::{Chain, ChainKey, Witness};
use crate::check::{self, CheckInputs, CheckReport, Problem, ProblemKind, Progress, RepairReport};
use crate::clock::{Clock, ManualClock};
use crate::event::{Actor, ActorRole, KeyId, NewKey};
use crate::fleet::{Appended, Fence, Fleet, FleetStatus, Replica, Revoked};
use crate::ledger::{self, Command, Ledger, LogInfo, Op};
use crate::log::{Batch, Log, LogRead, MemLog, MetaKey, SharedLog, SledLog};
use crate::projection::{AuditEntry, KeyView, SnapshotData};
use crate::refused::{self, RefusedAttempt};
use crate::token::ExistingKey;
use crate::token::{self, ApiKey};
use crate::{Error, backup, codec, file, snapshot};

mod people;
pub use people::RevokedActor;

const LOCK_FILE: &str = "keyledger.lock";
const LOG_DIR: &str = "log";
/// Each key's last-used minute, outside the log; see [`KeyStore::verify`].
const LAST_USED_FILE: &str = "last-used";
/// How often the writer wakes when idle: the system clock's minute for last-used stamps
/// is at most this stale.
const TICK: Duration = Duration::from_secs(1);

/// A new key, as returned once by [`KeyStore::create_key`].
#[derive(Debug)]
pub struct CreatedKey {
    /// The key's public id.
    pub id: KeyId,
    /// The sequence number of the creation in the log.
    pub seq: u64,
    /// The secret: show it to its owner once; the store cannot show it again.
    pub key: ApiKey,
}

/// A rolled key's new secret, as returned once by [`KeyStore::roll_key`].
#[derive(Debug)]
pub struct RolledKey {
    /// The key's public id (unchanged).
    pub id: KeyId,
    /// The sequence number of the roll in the log.
    pub seq: u64,
    /// The new secret: show it to its owner once.
    pub key: ApiKey,
    /// Until when the previous secret keeps verifying (the roll's own time for no grace).
    pub previous_valid_until: SystemTime,
    /// For a roll with no grace in fleet mode (a revocation of the previous secret): the
    /// hosts that may still accept the previous secret when the wait ended; see [`Revoked`].
    pub unconfirmed: Vec<String>,
}

/// Whether a store's history is proven; see [`KeyStore::integrity`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Integrity {
    /// Every record from the first was checked when the store opened (or since).
    Verified,
    /// Opened from a snapshot: the records before it are being verified in the
    /// background.
    Verifying,
    /// The records before the snapshot do not prove the state it holds: the store fails
    /// closed, verifying no key and refusing writes. If `check` (with snapshots) names only
    /// the snapshot, remove the snapshot file and reopen; otherwise restore from a backup.
    Damaged(Problem),
}

/// The integrity, shared by the store, its writer and the verifying thread.
struct IntegrityCell {
    state: Mutex<Integrity>,
    done: Condvar,
}

impl IntegrityCell {
    fn new(state: Integrity) -> Arc<Self> {
        Arc::new(IntegrityCell {
            state: Mutex::new(state),
            done: Condvar::new(),
        })
    }

    fn get(&self) -> Integrity {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set(&self, state: Integrity) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
        self.done.notify_all();
    }

    fn wait(&self) -> Integrity {
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.done
            .wait_while(guard, |s| *s == Integrity::Verifying)
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The error every write gets once the history is known to be damaged.
    fn refusal(&self) -> Option<Error> {
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            Integrity::Damaged(p) => Some(Error::corrupt(
                p.seq,
                p.kind,
                format!("{}; the store refuses writes", p.detail),
            )),
            _ => None,
        }
    }
}

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
            .field("save_last_used_every", &self.save_last_used_every);
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
            keep_refused: refused::DEFAULT_KEEP,
            save_last_used_every: Duration::from_secs(60),
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

    /// Makes this store one host of a fleet (feature `nats`): its log becomes a replica
    /// of a NATS JetStream stream that every host appends to and follows, and revocations
    /// return once every host that may accept keys has applied them. Needs [`Builder::chain_key`], the same
    /// on every host. On an empty stream, the store's log is published as its beginning
    /// (how a fleet is bootstrapped); a store joining a stream that holds records must be
    /// empty or a prefix of it. Only [`Builder::open`] takes part in a fleet.
    #[cfg(feature = "nats")]
    pub fn fleet(mut self, options: crate::fleet::FleetOptions) -> Self {
        self.fleet = Some(options);
        self
    }

    fn chain(&self) -> Chain {
        Chain::new(self.chain_key.as_ref())
    }

    /// The shared log this store is to join, connected; `None` for a single host.
    fn shared(&self) -> Result<Option<SharedParts>, Error> {
        #[cfg(feature = "nats")]
        if let Some(options) = &self.fleet {
            options.validated()?;
            if self.chain_key.is_none() {
                return Err(Error::invalid(
                    "chain key",
                    "a fleet needs the chain key all its hosts share",
                ));
            }
            let fleet = Fleet::new(options.clone(), self.chain());
            let log = crate::log::NatsLog::connect(options)?;
            return Ok(Some(SharedParts {
                log: Box::new(log),
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
    /// [`Error::Io`] or [`Error::Storage`]: the check could not run. Damage is reported
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
    fn open_log(&self, dir: &Path, create: bool) -> Result<(SledLog, File, LogInfo), Error> {
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
    if log.scan(0).next().is_some() {
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
    file::remove_leftovers(dir, &[snapshot::SNAPSHOT_FILE, LAST_USED_FILE]);
}

/// How long opening waits for a busy lock before it says `Locked`.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(200);

/// A command waiting for the writer, with where to answer.
struct Pending {
    command: Command,
    reply: Sender<Result<(KeyId, u64), Error>>,
}

/// What callers send the writer.
enum Request {
    Write(Pending),
    /// Write a backup of every record so far to this file; answer with the count.
    Export(PathBuf, Sender<Result<u64, Error>>),
}

/// An embedded API-key store: an append-only event log on disk and in-memory projections.
///
/// All methods take `&self`; share it between threads with an `Arc`. Writes are
/// serialized through one writer thread and return once durable; `verify` runs in
/// parallel on every thread and never waits for a write.
pub struct KeyStore {
    ledger: Arc<Ledger>,
    /// Reads the security trail.
    trail: Box<dyn LogRead>,
    require_whitelist: bool,
    integrity: Arc<IntegrityCell>,
    tx: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    /// Saves the last-used stamps every so often, and once more when the store closes.
    last_used: Option<Saver>,
    verifier: Option<JoinHandle<()>>,
    /// Stops the verifier when the store closes: a short-lived process need not wait for it.
    cancel: Arc<AtomicBool>,
    dir: Option<PathBuf>,
    from_snapshot: bool,
    /// The fleet this store is a host of, if any.
    fleet: Option<Arc<Fleet>>,
    /// Closed while this host, unheard by its fleet for too long or catching up after it,
    /// rejects every key; always open for a single host.
    rejecting: Arc<Fence>,
    _lock: Option<File>,
}

/// What a host of a fleet starts with: the shared log, connected, and what the hosts
/// know of each other.
struct SharedParts {
    log: Box<dyn SharedLog>,
    fleet: Arc<Fleet>,
    fence: Arc<Fence>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .field("last_seq", &self.last_seq())
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Options for opening a store.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Opens the store in directory `path` with default options, creating it if needed.
    ///
    /// # Errors
    /// As [`Builder::open`].
    ///
    /// # Example
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = keyledger::KeyStore::open(dir.path().join("keys")).unwrap();
    /// assert_eq!(store.last_seq(), 0);
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Builder::default().open(path)
    }

    /// Replays `log` (from a snapshot if one fits), checks it reaches its head and the
    /// witness, and starts the writer on it.
    fn start(
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
        let (proj, seal) = match loaded {
            Some((proj, seal)) => (proj, Some(seal)),
            None => (crate::projection::Projection::new(), None),
        };
        let ledger = Ledger::from_projection(proj, chain.clone(), clock);
        ledger.replay(&*log, u64::MAX, total, &options.progress)?;
        ledger::reaches_head(stored, ledger.head())?;
        if let Some(witness) = options.expect_head
            && shared.is_none()
        {
            ledger::reaches_witness(&*log, &chain, ledger.head(), witness)?;
        }
        let (replica, fleet, rejecting) = match shared {
            Some(parts) => {
                let replica = Replica::join(parts.log, Arc::clone(&parts.fleet), &mut *log, &ledger)?;
                // On a host of a fleet, the witness is checked once the host has caught up
                // with the stream: a new host (from an empty directory) that joins a stream
                // rolled back past the witness refuses to start.
                if let Some(witness) = options.expect_head {
                    ledger::reaches_witness(&*log, &chain, ledger.head(), witness)?;
                }
                (Some(replica), Some(parts.fleet), parts.fence)
            }
            None => (None, None, Arc::new(Fence::open())),
        };
        let last_used = dir
            .as_ref()
            .map(|d| LastUsed::load(d.join(LAST_USED_FILE), &ledger, &options))
            .transpose()?;
        let ledger = Arc::new(ledger);
        let last_used = last_used.map(|l| l.spawn(Arc::clone(&ledger))).transpose()?;
        let integrity = IntegrityCell::new(match seal {
            Some(_) => Integrity::Verifying,
            None => Integrity::Verified,
        });
        let cancel = Arc::new(AtomicBool::new(false));
        let verifier = match seal {
            Some(seal) => Some(spawn_verifier(
                log.reader(),
                Arc::clone(&ledger),
                seal,
                Arc::clone(&integrity),
                Arc::clone(&cancel),
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
                )
            })
            .transpose()?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let trail = log.reader();
        let writer = Writer {
            keep_refused: options.keep_refused,
            log,
            ledger: Arc::clone(&ledger),
            max_batch: options.max_batch,
            unacknowledged_from: None,
            upgrade: info.format < codec::STORE_FORMAT,
            snapshots,
            integrity: Arc::clone(&integrity),
            ids: StdRng::try_from_os_rng().map_err(|e| Error::Entropy(e.to_string()))?,
            replica,
            appended_at: 0,
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
            writer: Some(handle),
            last_used,
            verifier,
            cancel,
            dir,
            from_snapshot: seal.is_some(),
            fleet,
            rejecting,
            _lock: lock,
        })
    }

    /// The answer to a revocation: in a fleet, once every host that may accept keys has applied record
    /// `seq` (or the wait ended).
    fn revoked(&self, seq: u64) -> Revoked {
        Revoked {
            seq,
            unconfirmed: self.fleet.as_ref().map(|f| f.confirm(seq)).unwrap_or_default(),
        }
    }

    /// The fleet as this host sees it (every host heard from, its head and lag, and this
    /// host's contact with the shared log); `None` for a single host.
    pub fn fleet_status(&self) -> Option<FleetStatus> {
        let fleet = self.fleet.as_ref()?;
        let head = self.ledger.head();
        Some(fleet.status(|seq| {
            match seq {
                s if s == head.seq => Some(head.hash),
                s => ledger::record_hash(&*self.trail, self.ledger.chain(), s)
                    .ok()
                    .flatten(),
            }
        }))
    }

    fn submit(&self, actor: &Actor, op: Op) -> Result<(KeyId, u64), Error> {
        actor.validate()?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        let command = Command {
            actor: actor.plain(),
            via: actor.via(),
            op,
        };
        tx.send(Request::Write(Pending { command, reply }))
            .map_err(|_| Error::Closed)?;
        answer.recv().map_err(|_| Error::Closed)?
    }

    /// Creates a key and returns its id and its secret; the secret is shown only here.
    ///
    /// Only admins and super admins may create keys, and only a super admin may grant the
    /// `super-admin` role. Returns once the creation is durable and the key verifies.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name, role or network; [`Error::PermissionDenied`];
    /// [`Error::Io`] or [`Error::Storage`] if it could not be made durable.
    ///
    /// # Example
    /// ```
    /// use keyledger::{Actor, KeyStore, NewKey};
    /// let store = KeyStore::builder().open_temporary().unwrap();
    /// let created = store.create_key(&Actor::admin("alice"), NewKey::new("bot").role("notifier")).unwrap();
    /// let verified = store.verify(created.key.expose_secret(), "10.0.0.1".parse().unwrap()).unwrap();
    /// assert_eq!(verified.id(), created.id);
    /// ```
    pub fn create_key(&self, actor: &Actor, new: NewKey) -> Result<CreatedKey, Error> {
        let new = new.validated()?;
        let key = ApiKey::generate()?;
        let op = Op::Create {
            new,
            hash: key.hash(),
            tail: key.tail(),
        };
        let (id, seq) = self.submit(actor, op)?;
        Ok(CreatedKey { id, seq, key })
    }

    /// Adds addresses or ranges to a key's whitelist, all or none. Returns the sequence
    /// number of the last record written.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::KeyDeleted`], [`Error::PermissionDenied`],
    /// [`Error::WhitelistUnchanged`] if one is already there, [`Error::InvalidInput`] for a
    /// bad network or past [`MAX_WHITELIST`](crate::MAX_WHITELIST); storage errors.
    pub fn whitelist_ip(
        &self,
        actor: &Actor,
        id: KeyId,
        nets: impl IntoIterator<Item = IpNet>,
    ) -> Result<u64, Error> {
        let nets = request_nets(nets)?;
        self.submit(actor, Op::Whitelist { id, nets }).map(|(_, seq)| seq)
    }

    /// Removes addresses or ranges from a key's whitelist, all or none. Returns what
    /// [`KeyStore::delete_key`] returns, for the last record written.
    ///
    /// An empty whitelist admits every address (unless the store requires a whitelist),
    /// so removing the last entry is refused: use
    /// [`KeyStore::unwhitelist_ip_allowing_any_address`] to mean it.
    ///
    /// # Errors
    /// As [`KeyStore::whitelist_ip`]; [`Error::WhitelistUnchanged`] if one is not there;
    /// [`Error::LastWhitelistEntry`] if the whitelist would end up empty.
    pub fn unwhitelist_ip(
        &self,
        actor: &Actor,
        id: KeyId,
        nets: impl IntoIterator<Item = IpNet>,
    ) -> Result<Revoked, Error> {
        self.unwhitelist(actor, id, nets, false)
    }

    /// Removes addresses or ranges from a key's whitelist, even the last one: a key whose
    /// whitelist ends up empty admits every address (unless the store requires a
    /// whitelist).
    ///
    /// # Errors
    /// As [`KeyStore::unwhitelist_ip`], without [`Error::LastWhitelistEntry`].
    pub fn unwhitelist_ip_allowing_any_address(
        &self,
        actor: &Actor,
        id: KeyId,
        nets: impl IntoIterator<Item = IpNet>,
    ) -> Result<Revoked, Error> {
        self.unwhitelist(actor, id, nets, true)
    }

    fn unwhitelist(
        &self,
        actor: &Actor,
        id: KeyId,
        nets: impl IntoIterator<Item = IpNet>,
        allow_any_address: bool,
    ) -> Result<Revoked, Error> {
        let nets = request_nets(nets)?;
        let op = Op::Unwhitelist {
            id,
            nets,
            allow_any_address,
        };
        let (_, seq) = self.submit(actor, op)?;
        Ok(self.revoked(seq))
    }

    /// Deletes a key. When this returns, the key no longer verifies on any thread; in a
    /// fleet ([`Builder::fleet`]), on any host either (a host cut off rejects every key
    /// before it is counted out), unless the answer lists hosts that had not confirmed
    /// within the wait. Returns the deletion's sequence number and
    /// those hosts.
    ///
    /// A super admin may delete any key, an admin only the keys they created.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::KeyDeleted`], [`Error::PermissionDenied`]; storage
    /// errors.
    pub fn delete_key(&self, actor: &Actor, id: KeyId) -> Result<Revoked, Error> {
        let (_, seq) = self.submit(actor, Op::Delete { id })?;
        Ok(self.revoked(seq))
    }

    /// Gives a key a new secret, shown once; its id, name, roles, whitelist and expiry
    /// stay. The previous secret keeps verifying for `grace` (zero: it stops at once).
    /// Rolling again during a grace period ends that period at once, so at most two
    /// secrets of a key ever verify. The rules are those of [`KeyStore::delete_key`].
    ///
    /// # Errors
    /// As [`KeyStore::delete_key`]; [`Error::InvalidInput`] for a grace period longer
    /// than [`MAX_GRACE`].
    pub fn roll_key(&self, actor: &Actor, id: KeyId, grace: Duration) -> Result<RolledKey, Error> {
        if grace > MAX_GRACE {
            return Err(Error::invalid(
                "grace",
                format!("at most {} days", MAX_GRACE.as_secs() / 86_400),
            ));
        }
        let key = ApiKey::generate()?;
        let op = Op::Roll {
            id,
            hash: key.hash(),
            tail: key.tail(),
            grace: i64::try_from(grace.as_micros()).unwrap_or(i64::MAX),
        };
        let (id, seq) = self.submit(actor, op)?;
        let previous_valid_until = self
            .ledger
            .read()
            .audit(seq)
            .next()
            .and_then(|e| e.previous_valid_until)
            .unwrap_or_else(SystemTime::now);
        let unconfirmed = match grace {
            Duration::ZERO => self.revoked(seq).unconfirmed,
            _ => Vec::new(),
        };
        Ok(RolledKey {
            id,
            seq,
            key,
            previous_valid_until,
            unconfirmed,
        })
    }

    /// Disables a key: it is rejected with [`Rejection::Disabled`] until enabled again.
    /// The rules are those of [`KeyStore::delete_key`], and so is what it returns.
    ///
    /// # Errors
    /// As [`KeyStore::delete_key`]; [`Error::StateUnchanged`] if it is already disabled.
    pub fn disable_key(&self, actor: &Actor, id: KeyId) -> Result<Revoked, Error> {
        let (_, seq) = self.submit(actor, Op::Disable { id })?;
        Ok(self.revoked(seq))
    }

    /// Enables a disabled key again. Returns the sequence number.
    ///
    /// # Errors
    /// As [`KeyStore::delete_key`]; [`Error::StateUnchanged`] if it is not disabled.
    pub fn enable_key(&self, actor: &Actor, id: KeyId) -> Result<u64, Error> {
        self.submit(actor, Op::Enable { id }).map(|(_, seq)| seq)
    }

    /// Adopts keys a platform already issued (see [`ExistingKey`]), all or none, made
    /// durable as one commit; returns their new ids in order. The rules are those of
    /// [`KeyStore::create_key`]. The audit kind is `imported`.
    ///
    /// # Errors
    /// [`Error::ImportEntry`] naming the first refused key by its position from 1, with
    /// why (bad input, a secret already in use, [`Error::PermissionDenied`]);
    /// [`Error::InvalidInput`] for no keys at all; storage errors. Nothing is written on
    /// any error.
    pub fn import_keys(&self, actor: &Actor, keys: Vec<ExistingKey>) -> Result<Vec<KeyId>, Error> {
        let count = keys.len() as u64;
        let keys = keys
            .into_iter()
            .enumerate()
            .map(|(n, mut k)| {
                k.new = k.new.validated().map_err(|e| Error::ImportEntry {
                    index: n + 1,
                    source: Box::new(e),
                })?;
                Ok(k)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let (_, last) = self.submit(actor, Op::Import { keys })?;
        Ok(self
            .ledger
            .read()
            .audit(last + 1 - count)
            .take(count as usize)
            .filter_map(|e| e.key_id)
            .collect())
    }

    /// The actor a request authenticated by admin key `key` acts as: the person the key
    /// was made for ([`NewKey::acting_for`]), or else the actor who created it, with the
    /// lesser of the creator's role when it made the key and the key's own (`super-admin`
    /// or `admin`): the person's granted role. The command carries the key (its records
    /// and refusals name it as `via`). The permission rules are then exactly those of that
    /// person: keys made through it are theirs, and an admin may act only on her own.
    /// Commands through the key are refused once it is deleted (or its person revoked,
    /// [`KeyStore::revoke_actor`]), disabled or expired, even if it verified when the
    /// request began; and an admin (through a key or not) may not change a key that holds
    /// the `super-admin` role ([`crate::Denial::OutranksActor`]).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] if the key is no longer active, or holds neither the `admin` nor the
    /// `super-admin` role; [`Error::KeyNotFound`] if it is gone.
    pub fn acting_through(&self, key: &VerifiedKey) -> Result<Actor, Error> {
        let view = self.key(key.id()).ok_or(Error::KeyNotFound(key.id()))?;
        // The refusal names the person the key stands for, as the same command typed at
        // the command line by that person would.
        let person = view
            .acts_for
            .clone()
            .unwrap_or_else(|| view.created_by.id().to_owned());
        if view.status != crate::KeyStatus::Active {
            return Err(Error::denied(
                &person,
                crate::Denial::AdminKeyRevoked { key: key.id() },
            ));
        }
        let granted = if view.roles.iter().any(|r| r == crate::SUPER_ADMIN_ROLE) {
            ActorRole::SuperAdmin
        } else if view.roles.iter().any(|r| r == crate::ADMIN_ROLE) {
            ActorRole::Admin
        } else {
            return Err(Error::denied(&person, crate::Denial::NotAnAdmin));
        };
        // The lesser role has the larger code.
        let creator = view.created_by.role();
        let role = if creator.code() >= granted.code() {
            creator
        } else {
            granted
        };
        Ok(Actor::new(person, role).through(key.id()))
    }

    /// The security trail: management commands the access rules refused (who tried what
    /// on which key, when, and why), oldest first. Kept apart from the key log and
    /// bounded (see [`Builder::keep_refused`]); a refused command changes no key and no
    /// sequence number.
    ///
    /// # Errors
    /// Storage errors, or [`Error::Corrupt`] if the trail is damaged.
    pub fn refused(&self) -> Result<Vec<RefusedAttempt>, Error> {
        self.trail
            .refused()?
            .iter()
            .map(|bytes| codec::decode_refused(bytes))
            .filter_map(|r| r.map(refused::attempt_of).transpose())
            .collect()
    }

    /// Checks a presented key and the client's address. O(1), no I/O, no lock taken for
    /// writing, and no allocation unless the key's name is longer than 22 bytes.
    ///
    /// A key that expired answers [`Rejection::Expired`], a disabled one
    /// [`Rejection::Disabled`]; every key answers [`Rejection::Stale`] on a host of a fleet
    /// that lost the shared log past its limit ([`FleetOptions::stale_reject`]).
    ///
    /// [`FleetOptions::stale_reject`]: crate::FleetOptions::stale_reject A successful verify stamps the key's last use, to the
    /// minute: at most one write to shared memory per key and minute, never to the log;
    /// the stamps are saved to the store's directory periodically and at close.
    ///
    /// # Errors
    /// A [`Rejection`] saying why the key is refused.
    pub fn verify(&self, token: &str, client_ip: IpAddr) -> Result<VerifiedKey, Rejection> {
        if self.rejecting.rejects() {
            return Err(Rejection::Stale);
        }
        match token::parse(token) {
            Ok(hash) => {
                self.ledger
                    .read()
                    .verify(&hash, client_ip, self.require_whitelist, self.ledger.clock())
            }
            Err(malformed) => self.verify_foreign(token, client_ip, malformed),
        }
    }

    /// A token outside keyledger's format: only keys adopted from another system can
    /// have one, and only they pay for the lookups (and a SHA-256 hash).
    #[cold]
    fn verify_foreign(
        &self,
        token: &str,
        client_ip: IpAddr,
        malformed: crate::Malformed,
    ) -> Result<VerifiedKey, Rejection> {
        let proj = self.ledger.read();
        let mut found = false;
        for hash in proj.foreign_candidates(token) {
            found = true;
            match proj.verify(&hash, client_ip, self.require_whitelist, self.ledger.clock()) {
                // A secret retired by its own hash (deleted, rolled out) does not come
                // back through a key adopted later by its SHA-256.
                Err(Rejection::UnknownKey) if proj.was_retired(&hash) => break,
                Err(Rejection::UnknownKey) => continue,
                answer => return answer,
            }
        }
        Err(if found {
            Rejection::UnknownKey
        } else {
            Rejection::Malformed(malformed)
        })
    }

    /// Picks the key out of the `x-api-key` header and verifies it; see
    /// [`api_key_from_headers`](crate::api_key_from_headers).
    ///
    /// # Errors
    /// A [`Rejection`] saying why the request is refused.
    pub fn verify_headers<'a, I>(&self, headers: I, client_ip: IpAddr) -> Result<VerifiedKey, Rejection>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        self.verify(token::api_key_from_headers(headers)?, client_ip)
    }

    /// Writes the whole log to `path` as a portable, versioned, checksummed backup, while
    /// the store keeps serving (writes wait for the export). Returns the number of records.
    /// The file is readable by its owner only (mode 0600), and replaces whatever is at
    /// `path` (a link there is replaced, not written through).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written; storage errors.
    pub fn export(&self, path: impl AsRef<Path>) -> Result<u64, Error> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        tx.send(Request::Export(path.as_ref().to_path_buf(), reply))
            .map_err(|_| Error::Closed)?;
        answer.recv().map_err(|_| Error::Closed)?
    }

    /// The live keys (neither deleted nor expired), oldest first.
    pub fn keys(&self) -> Vec<KeyView> {
        self.ledger.read().keys(false, self.ledger.clock().now_micros())
    }

    /// Every key ever created, deleted and expired ones included, oldest first.
    pub fn all_keys(&self) -> Vec<KeyView> {
        self.ledger.read().keys(true, self.ledger.clock().now_micros())
    }

    /// One key, whatever its status.
    pub fn key(&self, id: KeyId) -> Option<KeyView> {
        self.ledger.read().key(id, self.ledger.clock().now_micros())
    }

    /// The audit trail: who created, whitelisted, unwhitelisted and deleted which key, when.
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.ledger.read().audit(1).collect()
    }

    /// One entry of the audit trail: the one of record `seq`.
    pub fn audit_entry(&self, seq: u64) -> Option<AuditEntry> {
        if seq == 0 {
            return None;
        }
        self.ledger.read().audit(seq).next()
    }

    /// Every key as it stood right after record `seq`: the log's time travel.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if `seq` is beyond the end of the log.
    pub fn keys_at(&self, seq: u64) -> Result<Vec<KeyView>, Error> {
        let proj = self.ledger.read();
        if seq > proj.head().seq {
            return Err(Error::invalid(
                "seq",
                format!("{seq} is past the last record, {}", proj.head().seq),
            ));
        }
        Ok(proj.keys_at(seq))
    }

    /// Whether this store was opened from a snapshot (and the log's tail) rather than by
    /// replaying the whole log.
    pub fn opened_from_snapshot(&self) -> bool {
        self.from_snapshot
    }

    /// The sequence number of the last record (0 for an empty log).
    pub fn last_seq(&self) -> u64 {
        self.ledger.read().head().seq
    }

    /// The head: the last record's sequence number and chain hash. Keep it outside the
    /// store and hand it to [`Builder::expect_head`] to detect a store rolled back or
    /// replaced by an older copy.
    pub fn head(&self) -> Witness {
        let head = self.ledger.head();
        Witness {
            seq: head.seq,
            hash: head.hash,
        }
    }

    /// Whether the history this store was opened from is proven. Opening from a
    /// snapshot takes the records before it on trust and verifies them in the
    /// background; until then this is [`Integrity::Verifying`]. A store whose history
    /// proves damaged fails closed: it verifies no key and refuses every write.
    pub fn integrity(&self) -> Integrity {
        self.integrity.get()
    }

    /// Waits until the background verification (if any) has finished; see
    /// [`KeyStore::integrity`].
    pub fn wait_for_integrity(&self) -> Integrity {
        self.integrity.wait()
    }

    /// Whether the writer has stopped (after the log took records the state could not,
    /// or a panic): every write now answers [`Error::Closed`], while reads go on. Reopen
    /// the store.
    pub fn is_closed(&self) -> bool {
        self.writer.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// How many keys are live.
    pub fn live_key_count(&self) -> usize {
        self.ledger.read().live_count()
    }
}

/// The longest grace period a roll may give the previous secret.
pub const MAX_GRACE: Duration = Duration::from_secs(365 * 86_400);

fn request_nets(nets: impl IntoIterator<Item = IpNet>) -> Result<Vec<IpNet>, Error> {
    let nets: Vec<IpNet> = nets.into_iter().collect();
    if nets.is_empty() {
        return Err(Error::invalid("network", "no address or range given"));
    }
    crate::event::validate_whitelist(&nets)
}

/// Verifies the records under a snapshot on a thread of its own and records the result.
/// A store whose history proves damaged fails closed: no key verifies any more (a full
/// replay would not have opened it at all), and writes are refused. Setting `cancel` (the
/// store is closing) stops the check early, leaving the integrity unknown.
fn spawn_verifier(
    log: Box<dyn LogRead>,
    ledger: Arc<Ledger>,
    seal: snapshot::Seal,
    integrity: Arc<IntegrityCell>,
    cancel: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, Error> {
    Ok(std::thread::Builder::new()
        .name("keyledger-verify".into())
        .spawn(move || {
            let log = Cancellable {
                inner: log,
                cancel: Arc::clone(&cancel),
            };
            let verdict = snapshot::verify_prefix(&log, ledger.chain(), seal, &None);
            if cancel.load(Ordering::Acquire) {
                return;
            }
            let problem = match verdict {
                Ok(()) => return integrity.set(Integrity::Verified),
                Err(Error::Corrupt { seq, kind, reason }) => Problem {
                    seq,
                    kind,
                    detail: reason,
                },
                Err(e) => Problem {
                    seq: 0,
                    kind: ProblemKind::Undecodable,
                    detail: e.to_string(),
                },
            };
            ledger.write_state().stop_verifying();
            integrity.set(Integrity::Damaged(problem));
        })?)
}

/// A log whose scans end early once `cancel` is set.
struct Cancellable {
    inner: Box<dyn LogRead>,
    cancel: Arc<AtomicBool>,
}

impl LogRead for Cancellable {
    fn scan(&self, from: u64) -> crate::log::Scan<'_> {
        Box::new(
            self.inner
                .scan(from)
                .take_while(|_| !self.cancel.load(Ordering::Relaxed)),
        )
    }

    fn floor(&self, key: u64) -> Result<Option<crate::log::Entry>, crate::log::LogError> {
        self.inner.floor(key)
    }

    fn head(&self) -> Result<Option<Vec<u8>>, crate::log::LogError> {
        self.inner.head()
    }

    fn meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, crate::log::LogError> {
        self.inner.meta(key)
    }

    fn refused(&self) -> Result<Vec<Vec<u8>>, crate::log::LogError> {
        self.inner.refused()
    }
}

impl Drop for KeyStore {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Release);
        // This host leaves the fleet: it stops announcing (and withdraws its head).
        if let Some(fleet) = &self.fleet {
            fleet.close();
        }
        self.tx.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if let Some(saver) = self.last_used.take() {
            saver.finish();
        }
        if let Some(verifier) = self.verifier.take() {
            let _ = verifier.join();
        }
    }
}

/// Saves snapshots on a thread of their own, so that a write never waits for a whole
/// snapshot: the writer only marks where it begins ([`Projection::begin_freeze`]), and the
/// worker copies the state out a part at a time under the read lock, then encodes, writes
/// and syncs it.
///
/// [`Projection::begin_freeze`]: crate::projection::Projection::begin_freeze
struct Snapshots {
    policy: snapshot::Policy,
    begun: Option<Sender<()>>,
    done: Receiver<()>,
    /// Whether the worker has a snapshot in hand.
    busy: bool,
    worker: Option<JoinHandle<()>>,
}

/// Items copied per taking of the read lock: a bounded wait for the writer.
const SNAPSHOT_PART: usize = 8192;

impl Snapshots {
    fn start(policy: snapshot::Policy, chain: Chain, ledger: Arc<Ledger>) -> Result<Self, Error> {
        let (begun, jobs) = crossbeam_channel::bounded::<()>(1);
        let (finished, done) = crossbeam_channel::bounded::<()>(1);
        let path = policy.path.clone();
        let worker = std::thread::Builder::new()
            .name("keyledger-snapshot".into())
            .spawn(move || {
                for () in jobs {
                    let mut data = SnapshotData::default();
                    while !ledger.read().copy_frozen(&mut data, SNAPSHOT_PART) {}
                    ledger.write_state().end_freeze();
                    // A failure only costs the next open a longer replay.
                    let _ = snapshot::save(&path, data, &chain);
                    let _ = finished.send(());
                }
            })?;
        Ok(Snapshots {
            policy,
            begun: Some(begun),
            done,
            busy: false,
            worker: Some(worker),
        })
    }

    /// Begins a snapshot if `due` says so and the worker is free (or, when `wait`, once
    /// it is).
    fn save_if(&mut self, ledger: &Ledger, due: fn(&snapshot::Policy, u64) -> bool, wait: bool) {
        if self.busy {
            let finished = if wait {
                self.done.recv().is_ok()
            } else {
                self.done.try_recv().is_ok()
            };
            if !finished {
                return;
            }
            self.busy = false;
        }
        if !due(&self.policy, ledger.head().seq) {
            return;
        }
        let seq = ledger.write_state().begin_freeze();
        if let Some(begun) = &self.begun
            && begun.send(()).is_ok()
        {
            self.busy = true;
            self.policy.last = seq;
        } else {
            ledger.write_state().end_freeze();
        }
    }

    /// Waits for the worker to finish what it was given.
    fn finish(&mut self) {
        if self.busy {
            let _ = self.done.recv();
        }
        self.begun.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Each key's last-used minute as saved in the store's directory: loaded at open, saved on
/// a thread of its own every so often when it changed, and at close. The save reads every
/// key's stamp and writes a file that grows with the store: no write waits for it.
struct LastUsed {
    path: PathBuf,
    every: Duration,
    /// What the file holds.
    saved: Vec<(KeyId, u32)>,
}

/// The shortest interval between saves of the last-used stamps.
const MIN_SAVE_INTERVAL: Duration = Duration::from_millis(10);

/// The thread that saves the last-used stamps.
struct Saver {
    stop: Sender<()>,
    worker: JoinHandle<()>,
}

impl Saver {
    /// Saves once more and stops.
    fn finish(self) {
        drop(self.stop);
        let _ = self.worker.join();
    }
}

impl LastUsed {
    /// Loads the saved stamps into the state. A missing, unreadable or damaged file only
    /// costs the stamps (they are not part of the log and prove nothing); a link or
    /// anything but a regular file was planted, and is refused.
    fn load(path: PathBuf, ledger: &Ledger, options: &Builder) -> Result<Self, Error> {
        let saved = match file::read_store_file(&path, codec::MAX_LAST_USED_BYTES + 32) {
            Err(e @ Error::UnsafeFile { .. }) => return Err(e),
            read => read
                .ok()
                .flatten()
                .and_then(|bytes| codec::decode_last_used(&bytes).ok())
                .unwrap_or_default(),
        };
        ledger.read().restore_last_used(&saved);
        Ok(LastUsed {
            path,
            every: options.save_last_used_every,
            saved,
        })
    }

    /// Saves every `every` until the store closes, then once more.
    fn spawn(mut self, ledger: Arc<Ledger>) -> Result<Saver, Error> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let worker = std::thread::Builder::new()
            .name("keyledger-last-used".into())
            .spawn(move || {
                let every = self.every.max(MIN_SAVE_INTERVAL);
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    self.save(&ledger);
                }
                self.save(&ledger);
            })?;
        Ok(Saver { stop, worker })
    }

    /// Saves the stamps if they changed.
    fn save(&mut self, ledger: &Ledger) {
        let current = ledger.read().last_used();
        if current == self.saved {
            return;
        }
        let written = codec::encode_last_used(&current).and_then(|bytes| {
            file::write_atomically(&self.path, |out| Ok(std::io::Write::write_all(out, &bytes)?))
        });
        // A failure only makes the stamps staler; the next period tries again.
        if written.is_ok() {
            self.saved = current;
        }
    }
}

struct Writer {
    log: Box<dyn Log>,
    ledger: Arc<Ledger>,
    max_batch: usize,
    /// Most refused commands the security trail keeps.
    keep_refused: u64,
    /// Set after a failed write or sync: entries from here on may sit in the engine
    /// unacknowledged and are discarded before the next batch.
    unacknowledged_from: Option<u64>,
    /// A format 1 store: its format marker becomes 2 before the first block is written.
    upgrade: bool,
    snapshots: Option<Snapshots>,
    integrity: Arc<IntegrityCell>,
    /// Key ids: public, so a CSPRNG seeded once from the OS rather than a system call per
    /// key (secrets still come straight from the OS).
    ids: StdRng,
    /// On a host of a fleet: the shared log this store's log replicates.
    replica: Option<Replica>,
    /// The position of the message the shared log took last from this writer.
    appended_at: u64,
}

/// The commands of `batch` that can be prepared together, each against the state the
/// batch starts from; the others go to `deferred`, for the next batch. A command waits
/// when an earlier one acts on its key, or on the admin key it came through (which could
/// be gone by then), or when it acts on a key an earlier one came through; a person's
/// revocation, which may delete any admin key, is prepared alone.
fn partition(batch: Vec<Pending>, deferred: &mut VecDeque<Pending>) -> Vec<Pending> {
    let mut acted: HashSet<KeyId> = HashSet::new();
    let mut through: HashSet<KeyId> = HashSet::new();
    let mut alone = false;
    let mut now = Vec::with_capacity(batch.len());
    for p in batch {
        let (op, via) = (&p.command.op, p.command.via);
        let waits = alone
            || (op.acts_on_many() && !now.is_empty())
            || op
                .key_id()
                .is_some_and(|id| acted.contains(&id) || through.contains(&id))
            || via.is_some_and(|v| acted.contains(&v));
        if waits {
            deferred.push_back(p);
            continue;
        }
        acted.extend(op.key_id());
        through.extend(via);
        alone = op.acts_on_many();
        now.push(p);
    }
    now
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>) {
        let mut deferred: VecDeque<Pending> = VecDeque::new();
        // A single host hears from no one else.
        let incoming = self
            .replica
            .as_ref()
            .map_or_else(crossbeam_channel::never, |r| r.incoming.clone());
        loop {
            let mut batch: Vec<Pending> = deferred.drain(..).collect();
            let mut export = None;
            self.ledger.clock().tick();
            if batch.is_empty() {
                crossbeam_channel::select! {
                    recv(rx) -> request => match request {
                        Ok(Request::Write(p)) => batch.push(p),
                        Ok(Request::Export(path, reply)) => export = Some((path, reply)),
                        Err(_) => break,
                    },
                    recv(incoming) -> delivered => {
                        if let Ok(delivered) = delivered {
                            self.apply_delivered(delivered);
                        }
                        continue;
                    },
                    default(TICK) => {
                        self.poll_shared();
                        continue;
                    },
                }
            }
            while batch.len() < self.max_batch && export.is_none() {
                match rx.try_recv() {
                    Ok(Request::Write(p)) => batch.push(p),
                    Ok(Request::Export(path, reply)) => export = Some((path, reply)),
                    Err(_) => break,
                }
            }
            // Apply what other hosts appended first, so that the batch is prepared against
            // the freshest state (and more often wins the race to append).
            while let Ok(delivered) = incoming.try_recv() {
                self.apply_delivered(delivered);
            }
            if !batch.is_empty() && self.commit(batch, &mut deferred).is_err() {
                break;
            }
            if let Some(s) = self
                .snapshots
                .as_mut()
                .filter(|_| self.integrity.refusal().is_none())
            {
                s.save_if(&self.ledger, snapshot::Policy::due, false);
            }
            if let Some((path, reply)) = export {
                let head = self.ledger.head();
                let _ = reply.send(backup::export(&*self.log, head, self.ledger.chain(), &path));
            }
        }
        if self.unacknowledged_from.is_some() && self.roll_back() {
            let _ = self.log.sync();
        }
        if let Some(replica) = self.replica.as_mut() {
            let _ = replica.settle(&mut *self.log);
        }
        let damaged = self.integrity.refusal().is_some();
        if let Some(s) = self.snapshots.as_mut() {
            // A damaged state is never saved: the next open must find the damage again.
            if !damaged {
                s.save_if(&self.ledger, snapshot::Policy::due_at_close, true);
            }
            s.finish();
        }
    }

    /// Removes the entries of a failed batch from the engine (they may sit there, written
    /// but not synced) and restores the head. Best effort: if it fails too, the next batch
    /// discards them first.
    fn roll_back(&mut self) -> bool {
        let Ok(head) = self.ledger.encode_head(self.ledger.head()) else {
            return false;
        };
        let undo = Batch {
            discard_from: self.unacknowledged_from,
            entries: &[],
            head: &head,
        };
        let ok = self.log.write(&undo).is_ok();
        if ok {
            self.unacknowledged_from = None;
        }
        ok
    }

    /// Prepares, writes, syncs and accepts one batch, answering every caller in it.
    /// Commands that act on a key already acted on in this batch wait for the next one,
    /// so each is checked against a state that holds everything before it.
    fn commit(&mut self, batch: Vec<Pending>, deferred: &mut VecDeque<Pending>) -> Result<(), ()> {
        let now = partition(batch, deferred);
        if let Some(refusal) = self.integrity.refusal() {
            for p in now {
                let _ = p.reply.send(Err(refusal.replicate()));
            }
            return Ok(());
        }
        if self.replica.is_some() {
            return self.commit_shared(now, deferred);
        }
        let commands: Vec<&Command> = now.iter().map(|p| &p.command).collect();
        let prepared = self.ledger.prepare(&commands, &mut self.ids);
        let refused = self.refusals(&commands, &prepared.outcomes);
        let mut outcomes = prepared.outcomes.into_iter();
        let replies = now.into_iter().map(|p| p.reply);
        let Some(first) = prepared.entries.first().map(|e| e.0) else {
            if refused {
                // Best effort: a refusal stands whether or not its trace is durable.
                let _ = self.log.sync();
            }
            for (reply, outcome) in replies.zip(outcomes) {
                let _ = reply.send(outcome);
            }
            return Ok(());
        };
        if let Err(e) = self.make_durable(&prepared.entries, prepared.head) {
            self.unacknowledged_from = Some(self.unacknowledged_from.map_or(first, |s| s.min(first)));
            self.roll_back();
            for (reply, outcome) in replies.zip(outcomes.by_ref()) {
                let _ = reply.send(outcome.and(Err(e.replicate())));
            }
            return Ok(());
        }
        self.unacknowledged_from = None;
        let accepted = self.ledger.accept(&prepared.entries);
        for (reply, outcome) in replies.zip(outcomes) {
            let outcome = match &accepted {
                Ok(()) => outcome,
                Err(e) => outcome.and(Err(e.replicate())),
            };
            let _ = reply.send(outcome);
        }
        // The log holds records the state could not take: stop writing.
        accepted.map_err(drop)
    }

    /// Appends the commands the access rules refused to the security trail (made
    /// durable by the batch's sync); returns whether there were any.
    fn refusals(&mut self, commands: &[&Command], outcomes: &[Result<(KeyId, u64), Error>]) -> bool {
        let at = self.ledger.clock().now_micros();
        let records: Vec<Vec<u8>> = commands
            .iter()
            .zip(outcomes)
            .filter_map(|(cmd, outcome)| {
                let e = outcome.as_ref().err()?;
                let r = refused::record_of(at, &cmd.actor, cmd.via, cmd.op.action(), cmd.op.key_id(), e)?;
                codec::encode_refused(&r).ok()
            })
            .collect();
        !records.is_empty() && self.log.append_refused(&records, self.keep_refused).is_ok()
    }

    fn make_durable(&mut self, entries: &[crate::log::Entry], head: crate::chain::Head) -> Result<(), Error> {
        if self.upgrade {
            self.log
                .set_meta(MetaKey::Format, &codec::STORE_FORMAT.to_le_bytes())?;
            self.log.sync()?;
            self.upgrade = false;
        }
        let head = self.ledger.encode_head(head)?;
        self.log.write(&Batch {
            discard_from: self.unacknowledged_from,
            entries,
            head: &head,
        })?;
        match self.replica.as_mut() {
            // The shared log acknowledged the entries: the local log is a copy of it,
            // synced when idle (a crash only lengthens the next catch-up).
            Some(replica) => {
                let bytes = entries.iter().map(|e| e.1.len()).sum();
                replica.written(&mut *self.log, self.appended_at, bytes)?;
            }
            None => self.log.sync()?,
        }
        Ok(())
    }

    /// Applies messages other hosts appended to the shared log. A failure has halted this
    /// host's writes already (or is the stream out of reach, which the next poll retries).
    fn apply_delivered(&mut self, delivered: crate::log::Delivered) {
        // A halted host applies nothing more: the message that halted it stays unapplied,
        // so nothing after it fits.
        if let Some(replica) = self.replica.as_mut()
            && replica.fleet.halted().is_none()
        {
            let _ = replica.apply_delivered(&mut *self.log, &self.ledger, delivered);
        }
    }

    /// When idle: reads the shared log's end and catches up with it, in case deliveries
    /// stalled.
    fn poll_shared(&mut self) {
        if let Some(replica) = self.replica.as_mut() {
            let _ = replica.settle(&mut *self.log);
            if replica.fleet.halted().is_none() {
                let _ = replica.poll(&mut *self.log, &self.ledger);
            }
        }
    }

    /// [`Writer::commit`] on a host of a fleet: the batch's entries are appended to the
    /// shared log as one message, then written locally and accepted. A batch that loses
    /// the race to append is prepared again against the state the winner left, so each
    /// command gets the answer that state gives (deleting a key another host just deleted
    /// is [`Error::KeyDeleted`]). A batch too large for one message is split.
    fn commit_shared(&mut self, mut now: Vec<Pending>, deferred: &mut VecDeque<Pending>) -> Result<(), ()> {
        let mut races = 0;
        let (prepared, commands_len) = loop {
            let halted = self.replica.as_ref().and_then(|r| r.fleet.halted());
            if let Some(reason) = halted {
                for p in now {
                    let _ = p.reply.send(Err(Error::FleetHalted {
                        reason: reason.clone(),
                    }));
                }
                return Ok(());
            }
            let bootstrapping = self.replica.as_ref().and_then(|r| r.fleet.bootstrapping());
            if let Some((have, until)) = bootstrapping {
                let e = Error::StreamUnavailable {
                    reason: format!(
                        "the shared log is still being bootstrapped: this host has records up to {have} \
                         of the {until} it begins with; writes wait until all are in"
                    ),
                };
                for p in now {
                    let _ = p.reply.send(Err(e.replicate()));
                }
                return Ok(());
            }
            let commands: Vec<&Command> = now.iter().map(|p| &p.command).collect();
            let prepared = self.ledger.prepare(&commands, &mut self.ids);
            if prepared.entries.is_empty() {
                break (prepared, commands.len());
            }
            let Some(replica) = self.replica.as_mut() else {
                return Err(());
            };
            match replica.append(&mut *self.log, &self.ledger, &prepared.entries) {
                Ok(Appended::At(position)) => {
                    self.appended_at = position;
                    break (prepared, commands.len());
                }
                Ok(Appended::Applied) => {
                    // The same records, applied already: answer as prepared.
                    let commands: Vec<&Command> = now.iter().map(|p| &p.command).collect();
                    self.refusals(&commands, &prepared.outcomes);
                    for (p, outcome) in now.into_iter().zip(prepared.outcomes) {
                        let _ = p.reply.send(outcome);
                    }
                    return Ok(());
                }
                Ok(Appended::Lost) if races < crate::fleet::MAX_RACES => races += 1,
                Ok(Appended::Lost) => {
                    let e = Error::StreamUnavailable {
                        reason: format!("lost the race to append {races} times in a row; try again"),
                    };
                    return self.answer_all(now, prepared.outcomes, &e);
                }
                Ok(Appended::TooLarge(limit)) if now.len() > 1 => {
                    // Half now, half with the next batch.
                    let later = now.split_off(now.len() / 2);
                    for p in later.into_iter().rev() {
                        deferred.push_front(p);
                    }
                    let _ = limit;
                }
                Ok(Appended::TooLarge(limit)) => {
                    let e = Error::invalid(
                        "batch",
                        format!(
                            "its records make a message larger than the shared log takes ({limit} bytes): \
                             import fewer keys at a time"
                        ),
                    );
                    return self.answer_all(now, prepared.outcomes, &e);
                }
                Err(e) => return self.answer_all(now, prepared.outcomes, &e),
            }
        };
        debug_assert_eq!(commands_len, now.len());
        let commands: Vec<&Command> = now.iter().map(|p| &p.command).collect();
        let refused = self.refusals(&commands, &prepared.outcomes);
        let replies = now.into_iter().map(|p| p.reply);
        let outcomes = prepared.outcomes.into_iter();
        if prepared.entries.is_empty() {
            if refused {
                let _ = self.log.sync();
            }
            for (reply, outcome) in replies.zip(outcomes) {
                let _ = reply.send(outcome);
            }
            return Ok(());
        }
        // In the shared log now, which is the acknowledgement: accepted here first, so
        // that a failing local write halts this host without turning a write every other
        // host applies into an error for its caller.
        let accepted = self.ledger.accept(&prepared.entries);
        let durable = accepted
            .as_ref()
            .map_err(Error::replicate)
            .and_then(|()| self.make_durable(&prepared.entries, prepared.head));
        if let Some(replica) = self.replica.as_ref() {
            match (&accepted, durable) {
                (Ok(()), Ok(())) => replica.fleet.applied(prepared.head, self.appended_at),
                (Ok(()), Err(e)) => {
                    replica.fleet.applied(prepared.head, self.appended_at);
                    replica.fleet.halt(format!(
                        "this host's log could not take its own appended records: {e}"
                    ));
                }
                (Err(e), _) => replica.fleet.halt(format!(
                    "this host's state could not take its own appended records: {e}"
                )),
            }
        }
        for (reply, outcome) in replies.zip(outcomes) {
            let outcome = match &accepted {
                Ok(()) => outcome,
                Err(e) => outcome.and(Err(e.replicate())),
            };
            let _ = reply.send(outcome);
        }
        Ok(())
    }

    /// Answers the commands of a batch that was not appended: a command the rules refused
    /// gets its own error (and goes to the security trail), the others `e`.
    fn answer_all(
        &mut self,
        now: Vec<Pending>,
        outcomes: Vec<Result<(KeyId, u64), Error>>,
        e: &Error,
    ) -> Result<(), ()> {
        let commands: Vec<&Command> = now.iter().map(|p| &p.command).collect();
        if self.refusals(&commands, &outcomes) {
            let _ = self.log.sync();
        }
        for (p, outcome) in now.into_iter().zip(outcomes) {
            let _ = p.reply.send(outcome.and(Err(e.replicate())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogError;
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

        fn append_refused(&mut self, records: &[Vec<u8>], keep: u64) -> Result<(), LogError> {
            self.inner.append_refused(records, keep)
        }

        fn reader(&self) -> Box<dyn LogRead> {
            self.inner.reader()
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
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    /// On a public-chain store anyone can re-seal a snapshot. One that brings a deleted key
    /// back is served at open, then found by the background check (which stops writes),
    /// and named by `check` as a snapshot problem.
    #[test]
    fn a_resealed_snapshot_reviving_a_deleted_key_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = Actor::super_admin("root");
        let options = || Builder::default().snapshot_every(2);
        let victim = {
            let store = options().open(dir.path()).unwrap();
            let victim = store
                .create_key(&root, NewKey::new("victim").role("bot"))
                .unwrap();
            store.create_key(&root, NewKey::new("other").role("bot")).unwrap();
            store.delete_key(&root, victim.id).unwrap();
            victim
        };
        let path = dir.path().join(snapshot::SNAPSHOT_FILE);
        let public = Chain::new(None);
        let mut data = codec::decode_snapshot(&std::fs::read(&path).unwrap(), &public).unwrap();
        assert_eq!(data.head.seq, 3, "the snapshot was saved at close");
        let slot = data.slots.iter_mut().find(|s| s.deleted.is_some()).unwrap();
        slot.deleted = None;
        std::fs::write(&path, codec::encode_snapshot(data, &public).unwrap()).unwrap();

        let store = options().open(dir.path()).unwrap();
        assert!(store.opened_from_snapshot());
        assert!(
            matches!(store.wait_for_integrity(), Integrity::Damaged(ref p) if p.kind == ProblemKind::Snapshot)
        );
        assert!(matches!(
            store.create_key(&root, NewKey::new("more").role("bot")),
            Err(Error::Corrupt { .. })
        ));
        drop(store);
        let report = options().check(dir.path()).unwrap();
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert_eq!(report.problems[0].kind, ProblemKind::Snapshot);
        // Without the snapshot, the log's own answer: the key stays deleted.
        std::fs::remove_file(&path).unwrap();
        let store = options().open(dir.path()).unwrap();
        assert!(
            store
                .verify(victim.key.expose_secret(), "10.0.0.1".parse().unwrap())
                .is_err()
        );
    }
}

/// Hosts of a fleet in one process, on a shared log held in memory: the writer's side of
/// fleet mode without a server (`tests/fleet.rs` runs it on a real one).
#[cfg(test)]
mod fleet_tests {
    use super::*;
    use crate::fleet::FleetOptions;
    use crate::log::MemShared;

    const CHAIN_KEY: [u8; 32] = [7; 32];

    fn host(shared: &MemShared, name: &str) -> KeyStore {
        host_on(shared, name, MemLog::default()).unwrap()
    }

    /// A host on `log` (which may hold records already: a single-host store).
    fn host_on(shared: &MemShared, name: &str, log: MemLog) -> Result<KeyStore, Error> {
        let options = Builder::default().chain_key(ChainKey::from_bytes(CHAIN_KEY));
        let info = match ledger::read_info(&log)? {
            Some(info) => info,
            None => ledger::initialize(&mut log.clone(), &options.chain())?,
        };
        let fleet = Fleet::new(FleetOptions::new("memory").host_id(name), options.chain());
        let parts = SharedParts {
            log: Box::new(shared.clone()),
            fence: fleet.fence(),
            fleet,
        };
        KeyStore::start(options, Box::new(log), info, None, Some(parts))
    }

    /// A bootstrap cut short (the stream stops answering after its first message): a host
    /// joining meanwhile takes no write and reports itself unhealthy; the bootstrapping
    /// host, started again, publishes the rest, and then everyone takes writes.
    #[test]
    fn an_interrupted_bootstrap_is_resumed_by_its_host_and_blocks_writes_until_whole() {
        let root = Actor::super_admin("root");
        let single = MemLog::default();
        {
            let options = Builder::default().chain_key(ChainKey::from_bytes(CHAIN_KEY));
            let mut log = single.clone();
            let info = ledger::initialize(&mut log, &options.chain()).unwrap();
            let store = KeyStore::start(options, Box::new(log), info, None, None).unwrap();
            let keys: Vec<ExistingKey> = (0..1500)
                .map(|i| {
                    ExistingKey::with_secret(
                        NewKey::new(format!("adopted {i}")).role("bot"),
                        &format!("legacy-secret-{i:010}"),
                    )
                    .unwrap()
                })
                .collect();
            store.import_keys(&root, keys).unwrap();
        }
        let shared = MemShared::default();
        shared.set_max_bytes(100_000);
        shared.set_capacity(Some(2));
        let cut = host_on(&shared, "origin", single.clone()).unwrap_err();
        assert!(matches!(cut, Error::StreamUnavailable { .. }), "{cut:?}");
        assert_eq!(
            shared.len(),
            2,
            "the genesis and one message of the bootstrap landed"
        );

        let b = host(&shared, "b");
        assert!(b.last_seq() > 0 && b.last_seq() < 1500);
        assert!(matches!(
            b.create_key(&root, NewKey::new("too early").role("bot")),
            Err(Error::StreamUnavailable { .. })
        ));
        assert!(b.fleet_status().unwrap().unhealthy);

        shared.set_capacity(None);
        let origin = host_on(&shared, "origin", single).unwrap();
        assert_eq!(origin.last_seq(), 1500);
        until("b has the whole bootstrap", || b.last_seq() == 1500);
        until("b reports itself healthy", || {
            !b.fleet_status().unwrap().unhealthy
        });
        b.create_key(&root, NewKey::new("now").role("bot")).unwrap();
        until("origin has it", || origin.last_seq() == 1501);
        assert_eq!(origin.audit(), b.audit());
    }

    fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Two hosts delete the same key at once: both append after the same position, one
    /// loses the race, applies the winner's message, prepares again and gets the error
    /// the new state gives. Both end with the same log.
    #[test]
    fn concurrent_deletes_on_two_hosts_have_one_winner_and_the_loser_gets_key_deleted() {
        let shared = MemShared::default();
        let (a, b) = (host(&shared, "a"), host(&shared, "b"));
        let root = Actor::super_admin("root");
        for round in 0..20 {
            let key = a
                .create_key(&root, NewKey::new(format!("k{round}")).role("bot"))
                .unwrap();
            until("b sees the key", || b.key(key.id).is_some());
            let barrier = std::sync::Barrier::new(2);
            let (ra, rb) = std::thread::scope(|s| {
                let x = s.spawn(|| {
                    barrier.wait();
                    a.delete_key(&root, key.id)
                });
                let y = s.spawn(|| {
                    barrier.wait();
                    b.delete_key(&root, key.id)
                });
                (x.join().unwrap(), y.join().unwrap())
            });
            let (won, lost) = match (ra, rb) {
                (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
                other => panic!("round {round}: {other:?}"),
            };
            assert!(matches!(lost, Error::KeyDeleted(id) if id == key.id), "{lost:?}");
            until("both applied it", || {
                a.last_seq() >= won.seq && b.last_seq() >= won.seq
            });
            for store in [&a, &b] {
                assert!(
                    store
                        .verify(key.key.expose_secret(), "10.0.0.1".parse().unwrap())
                        .is_err()
                );
            }
        }
        assert_eq!(a.last_seq(), 40);
        assert_eq!(a.audit(), b.audit());
        assert_eq!(a.head(), b.head());
    }

    /// A message whose records the chain key did not make is not the fleet's: nothing of it
    /// is applied, it is counted, and the host goes on writing and verifying.
    #[test]
    fn a_forged_message_is_skipped_and_counted_and_writes_go_on() {
        let shared = MemShared::default();
        let a = host(&shared, "a");
        let root = Actor::super_admin("root");
        let kept = a.create_key(&root, NewKey::new("kept").role("bot")).unwrap();
        // Record 2 made by someone without the chain key but with the head's hash (no
        // secret: `keyledger head` prints it, and every record links to the one before):
        // a valid link, valid fields, valid rules. Only the message's seal is missing.
        let head = a.head();
        let forged = crate::event::Record {
            seq: 2,
            at: a.ledger.head().at + 1,
            actor: Actor::super_admin("root"),
            via: None,
            event: crate::event::Event::Created {
                id: KeyId(42),
                hash: token::KeyHash([5; 32]),
                tail: *b"abcd",
                name: "forged".into(),
                roles: vec![crate::SUPER_ADMIN_ROLE.into()],
                whitelist: Vec::new(),
                expires_at: None,
                source: crate::event::KeySource::Generated,
                acts_for: None,
            },
            prev: head.hash,
        };
        let mut block = codec::BlockWriter::new(2);
        block.push(&codec::encode_record(&forged).unwrap());
        let entries = vec![block.finish()];
        // With the key, this very record would be accepted: the ledger alone cannot tell.
        let twin = Ledger::from_projection(
            crate::projection::Projection::new(),
            Chain::new(Some(&ChainKey::from_bytes(CHAIN_KEY))),
            Arc::new(Clock::system()),
        );
        let first: Vec<crate::log::Entry> = a.trail.scan(0).map(Result::unwrap).collect();
        twin.accept(&first).unwrap();
        twin.accept(&entries).unwrap();
        let stream_id = a.fleet.as_ref().and_then(|f| f.stream_id()).unwrap();
        let position = shared.len() as u64 + 1;
        let forged = crate::fleet::message::encode_entries(
            "forger",
            stream_id,
            position,
            0,
            &entries,
            &Chain::new(None),
        );
        shared.inject(forged.unwrap());
        until("a skips it", || a.fleet_status().unwrap().foreign_messages == 1);
        let status = a.fleet_status().unwrap();
        assert!(
            status
                .last_foreign
                .as_deref()
                .is_some_and(|why| why.contains("not sealed with the fleet's chain key")),
            "{status:?}"
        );
        assert!(status.halted.is_none() && !status.unhealthy, "{status:?}");
        assert_eq!(a.last_seq(), 1);
        assert!(a.keys().iter().all(|k| k.name != "forged"));
        a.create_key(&root, NewKey::new("more").role("bot")).unwrap();
        assert_eq!(a.last_seq(), 2);
        assert!(
            a.verify(kept.key.expose_secret(), "10.0.0.1".parse().unwrap())
                .is_ok()
        );
    }

    /// A message sealed with the fleet's key for its place, whose records do not follow
    /// the head (only a chain-key holder can make one): it is not skipped, it halts this
    /// host's writes with nothing of it applied.
    #[test]
    fn a_sealed_message_whose_records_do_not_fit_halts_writes() {
        let shared = MemShared::default();
        let a = host(&shared, "a");
        let root = Actor::super_admin("root");
        a.create_key(&root, NewKey::new("kept").role("bot")).unwrap();
        let entries: Vec<crate::log::Entry> = a.trail.scan(0).map(Result::unwrap).collect();
        let stream_id = a.fleet.as_ref().and_then(|f| f.stream_id()).unwrap();
        let position = shared.len() as u64 + 1;
        let chain = Chain::new(Some(&ChainKey::from_bytes(CHAIN_KEY)));
        // Record 1 again, sealed for the next position: the records do not follow the head.
        let again = crate::fleet::message::encode_entries("a", stream_id, position, 0, &entries[..1], &chain);
        shared.inject(again.unwrap());
        until("a halts", || a.fleet_status().unwrap().halted.is_some());
        let status = a.fleet_status().unwrap();
        assert_eq!(status.foreign_messages, 0, "{status:?}");
        assert_eq!(a.last_seq(), 1);
        assert!(matches!(
            a.create_key(&root, NewKey::new("more").role("bot")),
            Err(Error::FleetHalted { .. })
        ));
    }

    /// The stream deleted and created again with its first messages put back (genuine,
    /// sealed for those places): the host notices within a heartbeat, reports the fault,
    /// refuses writes with a typed error and keeps verifying; a new host does not start on
    /// it.
    #[test]
    fn a_stream_rolled_back_under_a_host_stops_its_writes_and_a_new_host_refuses_it() {
        let shared = MemShared::default();
        let a = host(&shared, "a");
        let root = Actor::super_admin("root");
        let kept = a.create_key(&root, NewKey::new("kept").role("bot")).unwrap();
        a.create_key(&root, NewKey::new("later").role("bot")).unwrap();
        shared.recreate(2);
        until("a notices", || a.fleet_status().unwrap().stream_fault.is_some());
        let status = a.fleet_status().unwrap();
        assert!(status.unhealthy, "{status:?}");
        assert!(matches!(
            a.create_key(&root, NewKey::new("more").role("bot")),
            Err(Error::StreamChanged { .. })
        ));
        assert!(
            a.verify(kept.key.expose_secret(), "10.0.0.1".parse().unwrap())
                .is_ok()
        );
        assert!(matches!(
            host_on(&shared, "b", MemLog::default()),
            Err(Error::StreamChanged { .. })
        ));
    }

    /// An older copy of the stream brought back (the same creation time, as a restored
    /// backup keeps): it ends before what the host applied, which it notices and reports;
    /// its writes stop until the stream reaches it again.
    #[test]
    fn a_stream_restored_from_an_older_copy_is_noticed_as_rolled_back() {
        let shared = MemShared::default();
        let a = host(&shared, "a");
        let root = Actor::super_admin("root");
        a.create_key(&root, NewKey::new("kept").role("bot")).unwrap();
        let older = shared.len();
        a.create_key(&root, NewKey::new("later").role("bot")).unwrap();
        shared.restore_older(older);
        until("a notices", || {
            a.fleet_status()
                .unwrap()
                .stream_fault
                .is_some_and(|f| f.contains("rolled back"))
        });
        assert!(matches!(
            a.create_key(&root, NewKey::new("more").role("bot")),
            Err(Error::StreamChanged { .. })
        ));
    }

    /// An append the shared log does not answer is an error that changes nothing here; a
    /// batch too large for one message is refused with a typed error.
    #[test]
    fn an_unanswered_append_and_an_oversized_batch_are_typed_errors_that_change_nothing() {
        let shared = MemShared::default();
        let a = host(&shared, "a");
        let root = Actor::super_admin("root");
        shared.set_unreachable(true);
        assert!(matches!(
            a.create_key(&root, NewKey::new("lost").role("bot")),
            Err(Error::StreamUnavailable { .. })
        ));
        shared.set_unreachable(false);
        assert_eq!((a.last_seq(), shared.len()), (0, 1), "the genesis only");
        let keys: Vec<ExistingKey> = (0..20_000)
            .map(|i| {
                let name = format!("adopted {i} with a long name to fill the message quickly");
                ExistingKey::with_secret(NewKey::new(name).role("bot"), &format!("legacy-secret-{i:010}"))
                    .unwrap()
            })
            .collect();
        let err = a.import_keys(&root, keys).unwrap_err();
        assert!(
            matches!(err, Error::InvalidInput { field: "batch", .. }),
            "{err:?}"
        );
        assert_eq!((a.last_seq(), shared.len()), (0, 1), "the genesis only");
        a.create_key(&root, NewKey::new("fine").role("bot")).unwrap();
        assert_eq!((a.last_seq(), shared.len()), (1, 2));
        // An append that landed but whose answer was lost is sent again and acknowledged
        // once: the shared log holds it once.
        shared.lose_next_answer();
        a.create_key(&root, NewKey::new("answer lost").role("bot"))
            .unwrap();
        assert_eq!((a.last_seq(), shared.len()), (2, 3));
    }
}
