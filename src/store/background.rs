//! The store's threads besides the writer: the snapshot worker, the verification of the
//! records under a snapshot the store was opened from (and the integrity it finds), and the
//! saving of last-used stamps and usage counts. None of them writes the log or answers a caller: they read
//! the state, write their own files, and record what they found.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::chain::Chain;
use crate::file;
use crate::ledger::Ledger;
use crate::log::LogRead;
use crate::log::MetaKey;
use crate::log::ShelfConnect;
use crate::model::error::Error;
use crate::model::problem::Problem;
use crate::model::problem::ProblemKind;
use crate::persist::last_used::Saved;
use crate::persist::snapshot;
use crate::projection::Projection;
use crate::projection::SnapshotData;
use crate::projection::usage::KEPT_HOURS;

use super::Integrity;
use super::stats::Stats;

/// Each key's last-used minute, outside the log; see [`KeyStore::verify`](super::KeyStore::verify).
pub(super) const LAST_USED_FILE: &str = "last-used";

/// The integrity, shared by the store, its writer and the verifying thread.
pub(super) struct IntegrityCell {
    state: Mutex<Integrity>,
    done: Condvar,
}

impl IntegrityCell {
    pub(super) fn new(state: Integrity) -> Arc<Self> {
        Arc::new(IntegrityCell {
            state: Mutex::new(state),
            done: Condvar::new(),
        })
    }

    pub(super) fn get(&self) -> Integrity {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(super) fn set(&self, state: Integrity) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
        self.done.notify_all();
    }

    pub(super) fn wait(&self) -> Integrity {
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.done
            .wait_while(guard, |s| *s == Integrity::Verifying)
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The error every write gets once the history is known to be damaged.
    pub(super) fn refusal(&self) -> Option<Error> {
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

/// Verifies the records under a snapshot on a thread of its own and records the result.
/// A store whose history proves damaged fails closed: no key verifies any more (a full
/// replay would not have opened it at all), and writes are refused. Setting `cancel` (the
/// store is closing) stops the check early, leaving the integrity unknown.
pub(super) fn spawn_verifier(
    log: Box<dyn LogRead>,
    ledger: Arc<Ledger>,
    seal: snapshot::Seal,
    integrity: Arc<IntegrityCell>,
    cancel: Arc<AtomicBool>,
    history: Option<History>,
) -> Result<JoinHandle<()>, Error> {
    Ok(std::thread::Builder::new()
        .name("keyledger-verify".into())
        .spawn(move || {
            let log = Cancellable {
                inner: log,
                cancel: Arc::clone(&cancel),
            };
            let (fetch, mut done) = match history {
                Some(History { fetch, done }) => (Some(fetch), Some(done)),
                None => (None, None),
            };
            let verdict = match fetch.map_or(Ok(true), |fetch| fetch(&cancel)) {
                Ok(true) => snapshot::verify_prefix(&log, ledger.chain(), seal, &None),
                Ok(false) => return,
                Err(e) => Err(e),
            };
            if cancel.load(Ordering::Acquire) {
                return;
            }
            let verdict = verdict.and_then(|()| done.as_mut().map_or(Ok(()), |done| done()));
            let problem = match verdict {
                Ok(()) => {
                    tracing::info!(target: "keyledger::store", "the history under the snapshot verified");
                    return integrity.set(Integrity::Verified);
                }
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
            tracing::error!(
                target: "keyledger::store",
                seq = problem.seq,
                kind = problem.kind.as_str(),
                "the history under the snapshot is damaged: no key verifies and writes are refused \
                 (keyledger check says more): {}",
                crate::model::token::format::redact_keys(&problem.detail)
            );
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

/// Fetches the history under a snapshot; `false` if cancelled by the flag.
pub(super) type FetchHistory = Box<dyn FnOnce(&AtomicBool) -> Result<bool, Error> + Send>;

/// The history under a snapshot a fleet host joined from, which the verifier fetches
/// before it verifies it (`store/joining.rs`).
pub(super) struct History {
    /// Fetches it; `false` if cancelled.
    pub(super) fetch: FetchHistory,
    /// Records that nothing is missing any more, once verified.
    pub(super) done: Box<dyn FnMut() -> Result<(), Error> + Send>,
}

/// Saves snapshots on a thread of their own, so that a write never waits for a whole
/// snapshot: the writer only marks where it begins ([`Projection::begin_freeze`]), and the
/// worker copies the state out a part at a time under the read lock, then encodes, writes
/// and syncs it.
///
/// [`Projection::begin_freeze`]: crate::projection::Projection::begin_freeze
pub(super) struct Snapshots {
    policy: snapshot::Policy,
    integrity: Arc<IntegrityCell>,
    /// The sequence number each snapshot is taken at.
    begun: Option<Sender<u64>>,
    done: Receiver<()>,
    /// Whether the worker has a snapshot in hand.
    busy: bool,
    worker: Option<JoinHandle<()>>,
}

/// Items copied per taking of the read lock: a bounded wait for the writer.
const SNAPSHOT_PART: usize = 8192;

/// How long a thread that reads the whole state a part at a time waits before each part.
const PART_PAUSE: Duration = Duration::from_micros(500);

/// The state's read lock, for the next part of a background read (a snapshot's copy, the
/// last-used save), taken [`PART_PAUSE`] after the last one was let go. Without the pause
/// the reader takes the lock again the moment it lets it go, before the writer it woke is
/// running, part after part: on a busy machine the writer (and every verify on a shard the
/// writer already holds) waited out the whole copy, 0.3–0.5 s at 2–3M keys and 1.2–1.8 s
/// at 10M, where a part takes 1–30 ms (`cargo bench --bench scale`).
fn read_part(ledger: &Ledger) -> crossbeam_utils::sync::ShardedLockReadGuard<'_, Projection> {
    std::thread::sleep(PART_PAUSE);
    ledger.read()
}

impl Snapshots {
    /// No snapshot is begun while `integrity` is [`Integrity::Verifying`]: the snapshot the
    /// store opened from stays its basis (a host still fetching the history under it opens
    /// from nothing else). `publish`: a fleet host's shelf, where each snapshot saved is
    /// published once the store's history is verified, before the next one begins.
    pub(super) fn start(
        policy: snapshot::Policy,
        chain: Chain,
        ledger: Arc<Ledger>,
        stats: Arc<Stats>,
        integrity: Arc<IntegrityCell>,
        publish: Option<ShelfConnect>,
    ) -> Result<Self, Error> {
        let (begun, jobs) = crossbeam_channel::bounded::<u64>(1);
        let (finished, done) = crossbeam_channel::bounded::<()>(1);
        let path = policy.path.clone();
        let every = policy.every;
        let verifying = Arc::clone(&integrity);
        let worker = std::thread::Builder::new()
            .name("keyledger-snapshot".into())
            .spawn(move || {
                for seq in jobs {
                    let started = Instant::now();
                    tracing::info!(target: "keyledger::snapshot", seq, "snapshot started");
                    let mut data = SnapshotData::default();
                    while !read_part(&ledger).copy_frozen(&mut data, SNAPSHOT_PART) {}
                    ledger.write_state().end_freeze();
                    // A failure only costs the next open a longer replay.
                    let saved = snapshot::save(&path, data, &chain);
                    stats.snapshot(saved.as_ref().ok().copied(), started.elapsed());
                    let published = saved.is_ok();
                    match saved {
                        Ok(bytes) => tracing::info!(
                            target: "keyledger::snapshot",
                            seq,
                            bytes,
                            elapsed_ms = millis(started.elapsed()),
                            "snapshot saved"
                        ),
                        Err(e) => tracing::warn!(
                            target: "keyledger::snapshot",
                            seq,
                            elapsed_ms = millis(started.elapsed()),
                            error = e.code(),
                            "snapshot not saved (the next open replays more): {e}"
                        ),
                    }
                    if let Some(shelf) = &publish
                        && published
                        && integrity.get() == Integrity::Verified
                    {
                        // Any seq past the store's head and another interval is a claim
                        // no genuine snapshot can make.
                        let plausible = ledger.head().seq.saturating_add(every);
                        super::joining::publish(shelf, &path, seq, plausible);
                    }
                    // Only now: the next snapshot does not begin (freezing the state) while
                    // this one is uploaded.
                    let _ = finished.send(());
                }
            })?;
        Ok(Snapshots {
            policy,
            integrity: verifying,
            begun: Some(begun),
            done,
            busy: false,
            worker: Some(worker),
        })
    }

    /// Begins a snapshot if `due` says so and the worker is free (or, when `wait`, once
    /// it is).
    pub(super) fn save_if(&mut self, ledger: &Ledger, due: fn(&snapshot::Policy, u64) -> bool, wait: bool) {
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
        if !due(&self.policy, ledger.head().seq) || self.integrity.get() == Integrity::Verifying {
            return;
        }
        let seq = ledger.write_state().begin_freeze();
        if let Some(begun) = &self.begun
            && begun.send(seq).is_ok()
        {
            self.busy = true;
            self.policy.last = seq;
        } else {
            ledger.write_state().end_freeze();
        }
    }

    /// Waits for the worker to finish what it was given.
    pub(super) fn finish(&mut self) {
        if self.busy {
            let _ = self.done.recv();
        }
        self.begun.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Each key's last-used minute and usage counts as saved in the store's directory: loaded
/// at open, saved on a thread of its own every so often when they changed, and at close.
/// The save reads every key's stamp and counts and writes a file that grows with the
/// store: no write waits for it.
pub(super) struct LastUsed {
    path: PathBuf,
    every: Duration,
    /// What the file holds.
    saved: Saved,
}

/// The shortest interval between saves of a file kept beside the log.
const MIN_SAVE_INTERVAL: Duration = Duration::from_millis(10);

/// A thread that saves a file kept beside the log (last-used stamps, credit counts) every
/// interval until the store closes, then once more.
pub(super) struct Saver {
    stop: Sender<()>,
    worker: JoinHandle<()>,
}

impl Saver {
    /// Starts thread `name`, calling `save` every `every` (at least [`MIN_SAVE_INTERVAL`])
    /// and once more when stopped.
    pub(super) fn spawn(
        name: &str,
        every: Duration,
        mut save: impl FnMut() + Send + 'static,
    ) -> Result<Self, Error> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let worker = std::thread::Builder::new().name(name.into()).spawn(move || {
            let every = every.max(MIN_SAVE_INTERVAL);
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                save();
            }
            save();
        })?;
        Ok(Saver { stop, worker })
    }

    /// Saves once more and stops.
    pub(super) fn finish(self) {
        drop(self.stop);
        let _ = self.worker.join();
    }
}

impl LastUsed {
    /// Loads the saved stamps into the state. A missing, unreadable or damaged file only
    /// costs the stamps (they are not part of the log and prove nothing); a link or
    /// anything but a regular file was planted, and is refused.
    pub(super) fn load(path: PathBuf, ledger: &Ledger, every: Duration) -> Result<Self, Error> {
        let saved = match file::read_store_file(&path, crate::persist::last_used::MAX_LAST_USED_BYTES + 32) {
            Err(e @ Error::UnsafeFile { .. }) => return Err(e),
            read => read
                .ok()
                .flatten()
                .and_then(|bytes| crate::persist::last_used::decode_last_used(&bytes).ok())
                .unwrap_or_default(),
        };
        let state = ledger.read();
        state.restore_last_used(&saved.last_used);
        state.restore_usage(&saved.usage, oldest_hour(ledger));
        drop(state);
        Ok(LastUsed { path, every, saved })
    }

    /// Saves every `every` until the store closes, then once more.
    pub(super) fn spawn(mut self, ledger: Arc<Ledger>, stats: Arc<Stats>) -> Result<Saver, Error> {
        let every = self.every;
        Saver::spawn("keyledger-last-used", every, move || self.save(&ledger, &stats))
    }

    /// Saves the stamps and counts if they changed, timing the save.
    fn save(&mut self, ledger: &Ledger, stats: &Stats) {
        let started = Instant::now();
        let (last_used, usage) = Projection::use_to_save(|| read_part(ledger), oldest_hour(ledger));
        let current = Saved { last_used, usage };
        if current == self.saved {
            return;
        }
        let written = crate::persist::last_used::encode_last_used(&current).and_then(|bytes| {
            file::write_atomically(&self.path, |out| Ok(std::io::Write::write_all(out, &bytes)?))
        });
        // A failure only makes the stamps staler; the next period tries again.
        if written.is_ok() {
            self.saved = current;
            stats.last_used_saved(started.elapsed());
        }
    }
}

/// The oldest hour whose counts are kept now (30 days before the current one).
fn oldest_hour(ledger: &Ledger) -> u32 {
    (ledger.clock().minute() / 60).saturating_sub(KEPT_HOURS)
}

/// Whole milliseconds, for log lines.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
