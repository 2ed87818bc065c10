//! The store: ties commands, access rules, the log and the projections together.
//!
//! Data flows one way: a command is checked against the projection, turned into records,
//! made durable by the one writer thread (group commit), applied to the projection, and
//! only then answered. Reads (`verify`, listings, audit) never touch disk or wait for the
//! writer.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, TryLockError};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::sync::ShardedLock;
use ipnet::IpNet;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::Error;
use crate::access::{self, KeyState, Rejection, VerifiedKey};
use crate::backup;
use crate::check::{self, CheckReport, Problem, ProblemKind, Progress, RepairReport};
use crate::codec;
use crate::event::{Actor, Event, KeyId, NewKey, Record};
use crate::log::{Anchor, Batch, Chain, ChainKey, Log, SledLog};
use crate::projection::{AuditEntry, KeyView, Projection};
use crate::snapshot;
use crate::token::{self, ApiKey, KeyHash};

const LOCK_FILE: &str = "keyledger.lock";
const LOG_DIR: &str = "log";

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
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("cache_bytes", &self.cache_bytes)
            .field("require_whitelist", &self.require_whitelist)
            .field("max_batch", &self.max_batch)
            .field("chain_key", &self.chain_key)
            .field("snapshot_every", &self.snapshot_every)
            .finish_non_exhaustive()
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
        }
    }
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

    /// Most commands made durable by one flush (default 1024).
    pub fn max_batch(mut self, commands: usize) -> Self {
        self.max_batch = commands.max(1);
        self
    }

    /// Chains the log with a secret key kept outside the store, so that whoever can write
    /// the database but lacks the key cannot forge a history that passes
    /// [`Builder::check`]. A store is keyed from its creation on and must always be
    /// opened with the same key.
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

    /// Calls `f(records done, records in all)` from time to time while a log is replayed
    /// or checked, for a progress bar.
    pub fn on_progress(mut self, f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Opens the store in directory `path`, creating it if needed, and rebuilds the
    /// projections by replaying the log.
    ///
    /// # Errors
    /// [`Error::Locked`] if another process has it open; [`Error::Corrupt`] or
    /// [`Error::UnsupportedVersion`] if the log does not replay (a torn tail can be removed
    /// with [`Builder::repair`]); [`Error::InvalidInput`] if the chain key is missing or
    /// wrong; [`Error::Io`] or [`Error::Storage`] if the disk fails.
    pub fn open(self, path: impl AsRef<Path>) -> Result<KeyStore, Error> {
        let (log, lock) = self.open_log(path.as_ref(), self.create_if_missing)?;
        KeyStore::start(self, log, Some((path.as_ref().to_path_buf(), lock)))
    }

    /// Opens a store that lives in a temporary directory and is removed when dropped.
    ///
    /// # Errors
    /// As [`Builder::open`].
    pub fn open_temporary(self) -> Result<KeyStore, Error> {
        let log = SledLog::open(None, self.cache_bytes)?;
        KeyStore::start(self, log, None)
    }

    /// Reads the whole log of the store at `path` and reports every way it fails to prove
    /// its history: sequence gaps, edited, inserted, removed and reordered records, a
    /// broken hash chain, a changed tail, and records that break the access rules.
    ///
    /// # Errors
    /// [`Error::Locked`], [`Error::Io`] or [`Error::Storage`]: the check could not run.
    /// Damage is reported in the [`CheckReport`], not as an error.
    pub fn check(self, path: impl AsRef<Path>) -> Result<CheckReport, Error> {
        let (log, _lock) = self.open_log(path.as_ref(), false)?;
        let chain = Chain::new(self.chain_key.as_ref());
        let marker = match log.check_meta(&chain) {
            Ok(marker) => marker,
            Err(Error::Corrupt { reason, .. }) => {
                return Ok(CheckReport {
                    records: 0,
                    keyed: chain.is_keyed(),
                    problems: vec![Problem {
                        seq: 0,
                        kind: ProblemKind::Invalid,
                        detail: reason,
                    }],
                    unlisted: 0,
                });
            }
            Err(e) => return Err(e),
        };
        let mismatch = marker.and_then(|m| m.mismatch(&chain));
        check::check(&log, &chain, mismatch, &self.progress)
    }

    /// Removes a torn tail from the store at `path`: a last record that cannot be decoded,
    /// or records after the anchored head (never acknowledged). Says what it removed.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the damage is anything else (repair never removes history
    /// that was acknowledged); [`Error::Locked`] and storage errors.
    pub fn repair(self, path: impl AsRef<Path>) -> Result<RepairReport, Error> {
        let (mut log, _lock) = self.open_log(path.as_ref(), false)?;
        let chain = self.checked_chain(&log)?;
        check::repair(&mut log, &chain)
    }

    /// Imports a backup made by [`KeyStore::export`] into the empty store at `path`
    /// (created if needed), giving the same records, state and hash chain. The whole file
    /// is checked first; a damaged, truncated or foreign file imports nothing. A keyed
    /// backup needs the same [`Builder::chain_key`]. Returns the number of records.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a damaged file, a non-empty store or a chain key that
    /// does not fit; [`Error::Corrupt`] for records that do not replay; storage errors.
    pub fn import(self, path: impl AsRef<Path>, backup: impl AsRef<Path>) -> Result<u64, Error> {
        let (mut log, _lock) = self.open_log(path.as_ref(), true)?;
        let chain = self.checked_chain(&log)?;
        backup::import(&mut log, &chain, backup.as_ref())
    }

    fn open_log(&self, dir: &Path, create: bool) -> Result<(SledLog, File), Error> {
        if create {
            std::fs::create_dir_all(dir)?;
        } else if !dir.join(LOG_DIR).is_dir() {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no store at {}", dir.display()),
            )));
        }
        let lock = lock_dir(dir)?;
        let log = SledLog::open(Some(&dir.join(LOG_DIR)), self.cache_bytes)?;
        Ok((log, lock))
    }

    fn checked_chain(&self, log: &SledLog) -> Result<Chain, Error> {
        let chain = Chain::new(self.chain_key.as_ref());
        if let Some(why) = log.check_meta(&chain)?.and_then(|m| m.mismatch(&chain)) {
            return Err(Error::invalid("chain key", why));
        }
        Ok(chain)
    }
}

fn lock_dir(dir: &Path) -> Result<File, Error> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            path: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(Error::Io(e)),
    }
}

struct Shared {
    proj: ShardedLock<Projection>,
    require_whitelist: bool,
}

impl Shared {
    fn read(&self) -> crossbeam_utils::sync::ShardedLockReadGuard<'_, Projection> {
        self.proj.read().unwrap_or_else(PoisonError::into_inner)
    }
}

enum Op {
    Create {
        new: NewKey,
        hash: KeyHash,
        tail: [u8; 4],
    },
    Whitelist {
        id: KeyId,
        nets: Vec<IpNet>,
    },
    Unwhitelist {
        id: KeyId,
        nets: Vec<IpNet>,
    },
    Delete {
        id: KeyId,
    },
}

struct Command {
    actor: Actor,
    op: Op,
    reply: Sender<Result<(KeyId, u64), Error>>,
}

/// What callers send the writer.
enum Request {
    Write(Command),
    /// Write a backup of every record so far to this file; answer with the count.
    Export(PathBuf, Sender<Result<u64, Error>>),
}

/// An embedded API-key store: an append-only event log on disk and in-memory projections.
///
/// All methods take `&self`; share it between threads with an `Arc`. Writes are
/// serialized through one writer thread and return once durable; `verify` runs in
/// parallel on every thread and never waits for a write.
pub struct KeyStore {
    shared: Arc<Shared>,
    tx: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    dir: Option<PathBuf>,
    from_snapshot: bool,
    _lock: Option<File>,
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

    fn start(options: Builder, log: SledLog, dir: Option<(PathBuf, File)>) -> Result<Self, Error> {
        let chain = options.checked_chain(&log)?;
        Self::start_with_log(options, Box::new(log), chain, dir)
    }

    /// Replays `log` and starts the writer on it.
    fn start_with_log(
        options: Builder,
        log: Box<dyn Log>,
        chain: Chain,
        dir: Option<(PathBuf, File)>,
    ) -> Result<Self, Error> {
        let (dir, lock) = dir.unzip();
        let policy = dir
            .as_ref()
            .filter(|_| options.snapshot_every > 0)
            .map(|d| snapshot::Policy {
                path: d.join(snapshot::SNAPSHOT_FILE),
                every: options.snapshot_every,
                last: 0,
            });
        let loaded = policy
            .as_ref()
            .and_then(|p| snapshot::load(&p.path, &*log, &chain, &options.progress));
        let from_snapshot = loaded.is_some();
        let proj = match loaded {
            Some(proj) => proj,
            None => check::replay(&*log, &chain, &options.progress)?,
        };
        let policy = policy.map(|p| snapshot::Policy {
            last: if from_snapshot { proj.head().seq } else { 0 },
            ..p
        });
        let shared = Arc::new(Shared {
            proj: ShardedLock::new(proj),
            require_whitelist: options.require_whitelist,
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = Writer {
            log,
            shared: Arc::clone(&shared),
            chain,
            max_batch: options.max_batch,
            unacknowledged_from: None,
            snapshots: policy,
            ids: StdRng::try_from_os_rng().map_err(|e| Error::Entropy(e.to_string()))?,
        };
        let handle = std::thread::Builder::new()
            .name("keyledger-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(KeyStore {
            shared,
            tx: Some(tx),
            writer: Some(handle),
            dir,
            from_snapshot,
            _lock: lock,
        })
    }

    fn submit(&self, actor: &Actor, op: Op) -> Result<(KeyId, u64), Error> {
        actor.validate()?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        tx.send(Request::Write(Command {
            actor: actor.clone(),
            op,
            reply,
        }))
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

    /// Removes addresses or ranges from a key's whitelist, all or none. Returns the
    /// sequence number of the last record written.
    ///
    /// Removing the last entry leaves an empty whitelist, which admits any address unless
    /// the store requires a whitelist.
    ///
    /// # Errors
    /// As [`KeyStore::whitelist_ip`]; [`Error::WhitelistUnchanged`] if one is not there.
    pub fn unwhitelist_ip(
        &self,
        actor: &Actor,
        id: KeyId,
        nets: impl IntoIterator<Item = IpNet>,
    ) -> Result<u64, Error> {
        let nets = request_nets(nets)?;
        self.submit(actor, Op::Unwhitelist { id, nets })
            .map(|(_, seq)| seq)
    }

    /// Deletes a key. When this returns, the key no longer verifies on any thread.
    /// Returns the deletion's sequence number.
    ///
    /// A super admin may delete any key, an admin only the keys they created.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::KeyDeleted`], [`Error::PermissionDenied`]; storage
    /// errors.
    pub fn delete_key(&self, actor: &Actor, id: KeyId) -> Result<u64, Error> {
        self.submit(actor, Op::Delete { id }).map(|(_, seq)| seq)
    }

    /// Checks a presented key and the client's address. O(1), no I/O, no allocation.
    ///
    /// # Errors
    /// A [`Rejection`] saying why the key is refused.
    pub fn verify(&self, token: &str, client_ip: IpAddr) -> Result<VerifiedKey, Rejection> {
        let hash = token::parse(token)?;
        self.shared
            .read()
            .verify(&hash, client_ip, self.shared.require_whitelist)
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

    /// The live keys, oldest first.
    pub fn keys(&self) -> Vec<KeyView> {
        self.shared.read().keys(false)
    }

    /// Every key ever created, deleted ones included, oldest first.
    pub fn all_keys(&self) -> Vec<KeyView> {
        self.shared.read().keys(true)
    }

    /// One key, live or deleted.
    pub fn key(&self, id: KeyId) -> Option<KeyView> {
        self.shared.read().key(id)
    }

    /// The audit trail: who created, whitelisted, unwhitelisted and deleted which key, when.
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.shared.read().audit(1).collect()
    }

    /// Every key as it stood right after record `seq`: the log's time travel.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if `seq` is beyond the end of the log.
    pub fn keys_at(&self, seq: u64) -> Result<Vec<KeyView>, Error> {
        let proj = self.shared.read();
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
        self.shared.read().head().seq
    }

    /// How many keys are live.
    pub fn live_keys(&self) -> usize {
        self.shared.read().live_count()
    }
}

fn request_nets(nets: impl IntoIterator<Item = IpNet>) -> Result<Vec<IpNet>, Error> {
    let nets: Vec<IpNet> = nets.into_iter().collect();
    if nets.is_empty() {
        return Err(Error::invalid("network", "no address or range given"));
    }
    crate::event::validate_whitelist(&nets)
}

impl Drop for KeyStore {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

struct Writer {
    log: Box<dyn Log>,
    shared: Arc<Shared>,
    chain: Chain,
    max_batch: usize,
    /// Set after a failed append or flush: records from here on may sit in the engine
    /// unacknowledged and are discarded before the next batch.
    unacknowledged_from: Option<u64>,
    snapshots: Option<snapshot::Policy>,
    /// Key ids: public, so a CSPRNG seeded once from the OS rather than a system call per
    /// key (secrets still come straight from the OS).
    ids: StdRng,
}

/// A command that passed the rules, with its records, waiting for the flush.
struct Accepted {
    reply: Sender<Result<(KeyId, u64), Error>>,
    id: KeyId,
    records: std::ops::Range<usize>,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>) {
        let mut deferred: VecDeque<Command> = VecDeque::new();
        loop {
            let mut batch: Vec<Command> = deferred.drain(..).collect();
            let mut export = None;
            if batch.is_empty() {
                match rx.recv() {
                    Ok(Request::Write(cmd)) => batch.push(cmd),
                    Ok(Request::Export(path, reply)) => export = Some((path, reply)),
                    Err(_) => break,
                }
            }
            while batch.len() < self.max_batch {
                if export.is_some() {
                    break;
                }
                match rx.try_recv() {
                    Ok(Request::Write(cmd)) => batch.push(cmd),
                    Ok(Request::Export(path, reply)) => export = Some((path, reply)),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() && self.commit(batch, &mut deferred).is_err() {
                break;
            }
            self.save_snapshot_if(snapshot::Policy::due);
            if let Some((path, reply)) = export {
                let head = self.shared.read().head();
                let _ = reply.send(backup::export(&*self.log, head, &self.chain, &path));
            }
        }
        if self.unacknowledged_from.is_some() && self.roll_back() {
            let _ = self.log.flush();
        }
        self.save_snapshot_if(snapshot::Policy::due_at_close);
    }

    /// Saves a snapshot if `due` says so. A failure only costs the next open a longer
    /// replay, so it is not reported to any caller.
    fn save_snapshot_if(&mut self, due: fn(&snapshot::Policy, u64) -> bool) {
        let Some(policy) = self.snapshots.as_mut() else {
            return;
        };
        let data = {
            let proj = self.shared.read();
            if !due(policy, proj.head().seq) {
                return;
            }
            proj.to_snapshot()
        };
        let seq = data.head.seq;
        if snapshot::save(&policy.path, data, &self.chain).is_ok() {
            policy.last = seq;
        }
    }

    /// Removes the records of a failed batch from the engine (they may sit there,
    /// applied but not flushed) and restores the anchor. Best effort: if it fails too, the
    /// next batch discards them first.
    fn roll_back(&mut self) -> bool {
        let head = self.shared.read().head();
        let anchor = (head.seq > 0).then_some(Anchor {
            seq: head.seq,
            hash: head.hash,
        });
        let undo = Batch {
            discard_from: self.unacknowledged_from,
            records: &[],
            anchor,
        };
        let ok = self.log.append(&undo).is_ok();
        if ok {
            self.unacknowledged_from = None;
        }
        ok
    }

    /// Checks, appends, flushes and applies one batch, answering every caller in it.
    /// Commands that touch a key already touched in this batch wait for the next one, so
    /// each is checked against a projection that holds everything before it.
    fn commit(&mut self, batch: Vec<Command>, deferred: &mut VecDeque<Command>) -> Result<(), ()> {
        // The records, and their bytes as the log takes them (same indices).
        let mut records: Vec<(Record, [u8; 32])> = Vec::new();
        let mut wire: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut accepted: Vec<Accepted> = Vec::new();
        {
            let proj = self.shared.read();
            let mut head = proj.head();
            let mut touched: HashSet<KeyId> = HashSet::new();
            let mut new_hashes: HashSet<KeyHash> = HashSet::new();
            for cmd in batch {
                if let Some(id) = cmd.op.key_id()
                    && !touched.insert(id)
                {
                    deferred.push_back(cmd);
                    continue;
                }
                let events = match Self::events(&proj, &cmd, &mut touched, &mut new_hashes, &mut self.ids) {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = cmd.reply.send(Err(e));
                        continue;
                    }
                };
                let start = records.len();
                let mut failed = None;
                let mut next = head;
                for event in events {
                    let record = Record {
                        seq: next.seq + 1,
                        at: now_micros().max(next.at),
                        actor: cmd.actor.clone(),
                        event,
                        prev: next.hash,
                    };
                    match codec::encode_record(&record) {
                        Ok(bytes) => {
                            let hash = self.chain.hash(&bytes);
                            next = crate::projection::Head {
                                seq: record.seq,
                                hash,
                                at: record.at,
                            };
                            wire.push((record.seq, bytes));
                            records.push((record, hash));
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    records.truncate(start);
                    wire.truncate(start);
                    let _ = cmd.reply.send(Err(e));
                    continue;
                }
                head = next;
                let id = records[start].0.event.key_id();
                accepted.push(Accepted {
                    reply: cmd.reply,
                    id,
                    records: start..records.len(),
                });
            }
        }
        if accepted.is_empty() {
            return Ok(());
        }
        let first = records[0].0.seq;
        let anchor = records.last().map(|(r, hash)| Anchor {
            seq: r.seq,
            hash: *hash,
        });
        if let Err(e) = self.make_durable(&wire, anchor) {
            self.unacknowledged_from = Some(self.unacknowledged_from.map_or(first, |s| s.min(first)));
            self.roll_back();
            for a in accepted {
                let _ = a.reply.send(Err(e.replicate()));
            }
            return Ok(());
        }
        self.unacknowledged_from = None;
        let mut proj = self.shared.proj.write().unwrap_or_else(PoisonError::into_inner);
        for a in accepted {
            let last = records[a.records.clone()].last().map_or(0, |(r, _)| r.seq);
            let mut result = Ok((a.id, last));
            for (record, hash) in &records[a.records] {
                if let Err(e) = proj.apply(record, *hash) {
                    result = Err(e);
                }
            }
            let broken = result.is_err();
            let _ = a.reply.send(result);
            if broken {
                // The log holds records the projection could not take: stop writing.
                return Err(());
            }
        }
        Ok(())
    }

    fn make_durable(&mut self, records: &[(u64, Vec<u8>)], anchor: Option<Anchor>) -> Result<(), Error> {
        self.log.append(&Batch {
            discard_from: self.unacknowledged_from,
            records,
            anchor,
        })?;
        self.log.flush()
    }

    /// The events a command would record, checked against the rules.
    fn events(
        proj: &Projection,
        cmd: &Command,
        touched: &mut HashSet<KeyId>,
        new_hashes: &mut HashSet<KeyHash>,
        ids: &mut StdRng,
    ) -> Result<Vec<Event>, Error> {
        let events = match &cmd.op {
            Op::Create { new, hash, tail } => {
                if proj.contains_hash(hash) || !new_hashes.insert(*hash) {
                    return Err(Error::invalid(
                        "key",
                        "generated key collides with a live key; retry",
                    ));
                }
                let id = loop {
                    let id = KeyId(ids.next_u64());
                    if !proj.contains_id(id) && touched.insert(id) {
                        break id;
                    }
                };
                vec![Event::Created {
                    id,
                    hash: *hash,
                    tail: *tail,
                    name: new.name.clone(),
                    roles: new.roles.clone(),
                    whitelist: new.whitelist.clone(),
                }]
            }
            Op::Whitelist { id, nets } => nets
                .iter()
                .map(|&net| Event::Whitelisted { id: *id, net })
                .collect(),
            Op::Unwhitelist { id, nets } => nets
                .iter()
                .map(|&net| Event::Unwhitelisted { id: *id, net })
                .collect(),
            Op::Delete { id } => vec![Event::Deleted { id: *id }],
        };
        // Events of one command all touch one key; check each against that key's state
        // as the earlier ones leave it.
        let mut whitelist: Option<Vec<IpNet>> = None;
        for event in &events {
            let base = proj.key_state(event.key_id());
            let state = base.map(|s| KeyState {
                whitelist: whitelist.as_deref().unwrap_or(s.whitelist),
                ..s
            });
            access::check_event(&cmd.actor, event, state)?;
            if let (Some(base), Event::Whitelisted { net, .. } | Event::Unwhitelisted { net, .. }) =
                (base, event)
            {
                let list = whitelist.get_or_insert_with(|| base.whitelist.to_vec());
                if matches!(event, Event::Whitelisted { .. }) {
                    list.push(*net);
                } else {
                    list.retain(|n| n != net);
                }
            }
        }
        Ok(events)
    }
}

impl Op {
    fn key_id(&self) -> Option<KeyId> {
        match self {
            Op::Create { .. } => None,
            Op::Whitelist { id, .. } | Op::Unwhitelist { id, .. } | Op::Delete { id } => Some(*id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU8, Ordering};

    const FAIL_APPEND: u8 = 1;
    const FAIL_FLUSH: u8 = 2;

    /// A log that fails its next append or flush when told to.
    struct FaultyLog {
        inner: SledLog,
        fault: Arc<AtomicU8>,
    }

    impl FaultyLog {
        fn take(&self, kind: u8) -> Result<(), Error> {
            if self
                .fault
                .compare_exchange(kind, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Err(Error::Io(std::io::Error::other("injected fault")));
            }
            Ok(())
        }
    }

    impl Log for FaultyLog {
        fn append(&mut self, batch: &Batch<'_>) -> Result<(), Error> {
            // An append that carries records fails; a roll-back (no records) succeeds.
            if !batch.records.is_empty() {
                self.take(FAIL_APPEND)?;
            }
            self.inner.append(batch)
        }

        fn flush(&mut self) -> Result<(), Error> {
            self.take(FAIL_FLUSH)?;
            self.inner.flush()
        }

        fn anchor(&self) -> Result<Option<Anchor>, Error> {
            self.inner.anchor()
        }

        fn scan(&self, seq: u64) -> crate::log::Scan<'_> {
            self.inner.scan(seq)
        }
    }

    fn faulty_store(dir: &Path) -> (KeyStore, Arc<AtomicU8>) {
        let fault = Arc::new(AtomicU8::new(0));
        let options = Builder::default();
        let inner = SledLog::open(Some(&dir.join(LOG_DIR)), options.cache_bytes).unwrap();
        let chain = options.checked_chain(&inner).unwrap();
        let log = Box::new(FaultyLog {
            inner,
            fault: Arc::clone(&fault),
        });
        (
            KeyStore::start_with_log(options, log, chain, None).unwrap(),
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
