//! The store's statistics: counters and fixed-bucket histograms of atomics, read out as
//! [`Statistics`] ([`KeyStore::statistics`]). What they mean is in the README's "Metrics"
//! table; the server encodes them for Prometheus, the bare library only counts.
//!
//! The decisions of `/auth` and the tower layer are on every request's path: they are
//! counted in shards, one per thread (round robin over [`SHARDS`]), each on cache lines of
//! its own, so that threads never write the same line. Everything else (the writer's
//! batches, syncs, snapshots, saves) happens a few times a second at most and uses one
//! set of atomics. Nothing here takes a lock, allocates when counting, or reads the clock
//! unless statistics are on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::KeyStore;
use crate::access::reason::Reason;
use crate::fleet::FleetStatus;
use crate::log::{Batch, Entry, Log, LogError, LogRead, MetaKey, Scan};

/// Shards of the decision counts: more than the threads that verify at once on most
/// hosts, few enough that a read-out (every scrape) stays a few microseconds.
const SHARDS: usize = 16;

/// Upper bounds of the verify latency buckets, in nanoseconds: a check in memory takes a
/// microsecond or so; the last ones catch a thread descheduled mid-check.
const VERIFY_NS: [u64; 12] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 10_000_000,
];
/// Upper bounds of the commit and sync buckets, in nanoseconds: 100 µs to 10 s.
const IO_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
/// Upper bounds of the snapshot and save buckets, in nanoseconds: 1 ms to 2 min.
const SAVE_NS: [u64; 12] = [
    1_000_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
    1_000_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    120_000_000_000,
];
/// Upper bounds of the batch size buckets, in commands (the writer takes at most
/// `Builder::max_batch`, 1024 by default, at once).
const BATCH: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// The decision slots: one per [`Reason`], then the accepted ones.
const DECISIONS: usize = Reason::ALL.len() + 1;
const ACCEPTED: usize = Reason::ALL.len();

/// Which shard this thread counts in.
#[cfg(feature = "tower")]
fn shard() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    // A thread that counts while its thread-locals are torn down shares shard 0.
    SHARD.try_with(|s| *s).unwrap_or(0)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A histogram with fixed bounds: a count per bucket (the last one past every bound) and
/// the sum of what was observed.
struct Buckets<const N: usize> {
    bounds: &'static [u64; N],
    counts: [AtomicU64; N],
    over: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Buckets<N> {
    fn new(bounds: &'static [u64; N]) -> Self {
        Buckets {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            over: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: u64) {
        // The first bound at or above the value (Prometheus's `le`).
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts
            .get(i)
            .unwrap_or(&self.over)
            .fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Adds this histogram's counts to `into`, which has `N + 1` buckets.
    fn add_to(&self, into: &mut [u64], sum: &mut u64) {
        for (total, count) in into.iter_mut().zip(self.counts.iter().chain([&self.over])) {
            *total += count.load(Ordering::Relaxed);
        }
        *sum = sum.saturating_add(self.sum.load(Ordering::Relaxed));
    }

    /// The read-out, each bound and the sum divided by `per_unit` (1e9 for nanoseconds
    /// to seconds).
    fn read(&self, per_unit: f64) -> Histogram {
        let mut counts = vec![0; N + 1];
        let mut sum = 0;
        self.add_to(&mut counts, &mut sum);
        Histogram::new(self.bounds, counts, sum, per_unit)
    }
}

/// One thread's share of the decision counts.
struct Shard {
    decisions: [AtomicU64; DECISIONS],
    verify: Buckets<{ VERIFY_NS.len() }>,
}

/// The statistics of one store, shared by its threads and its surfaces.
pub(crate) struct Stats {
    /// Off: nothing is counted (`Builder::statistics(false)`).
    enabled: bool,
    shards: Box<[CachePadded<Shard>]>,
    batch: Buckets<{ BATCH.len() }>,
    commit: Buckets<{ IO_NS.len() }>,
    sync: Buckets<{ IO_NS.len() }>,
    snapshot: Buckets<{ SAVE_NS.len() }>,
    /// The size of the last snapshot saved (0: none yet).
    snapshot_bytes: AtomicU64,
    snapshot_failures: AtomicU64,
    last_used_save: Buckets<{ SAVE_NS.len() }>,
    unconfirmed: AtomicU64,
}

impl Stats {
    pub(crate) fn new(enabled: bool) -> Arc<Self> {
        Arc::new(Stats {
            enabled,
            shards: (0..SHARDS)
                .map(|_| {
                    CachePadded::new(Shard {
                        decisions: std::array::from_fn(|_| AtomicU64::new(0)),
                        verify: Buckets::new(&VERIFY_NS),
                    })
                })
                .collect(),
            batch: Buckets::new(&BATCH),
            commit: Buckets::new(&IO_NS),
            sync: Buckets::new(&IO_NS),
            snapshot: Buckets::new(&SAVE_NS),
            snapshot_bytes: AtomicU64::new(0),
            snapshot_failures: AtomicU64::new(0),
            last_used_save: Buckets::new(&SAVE_NS),
            unconfirmed: AtomicU64::new(0),
        })
    }

    /// The time a decision starts, or `None` when nothing is counted (the clock is not
    /// read).
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn clock(&self) -> Option<Instant> {
        self.enabled.then(Instant::now)
    }

    /// Counts a decision of `/auth` or the layer begun at `started`: accepted, or refused
    /// for `refused`.
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn decided(&self, started: Instant, refused: Option<Reason>) {
        if !self.enabled {
            return;
        }
        let elapsed = nanos(started.elapsed());
        let Some(shard) = self.shards.get(shard()) else {
            return;
        };
        let slot = refused.map_or(ACCEPTED, Reason::slot);
        if let Some(count) = shard.decisions.get(slot) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        shard.verify.observe(elapsed);
    }

    /// Counts a batch the writer took, of `commands`, answered `elapsed` after it began.
    pub(crate) fn committed(&self, commands: usize, elapsed: Duration) {
        if self.enabled {
            self.batch.observe(commands as u64);
            self.commit.observe(nanos(elapsed));
        }
    }

    /// Counts a snapshot saved (its size) or not (`None`), after `elapsed`.
    pub(crate) fn snapshot(&self, bytes: Option<usize>, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        match bytes {
            Some(bytes) => {
                self.snapshot.observe(nanos(elapsed));
                self.snapshot_bytes.store(bytes as u64, Ordering::Relaxed);
            }
            None => {
                self.snapshot_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts a save of the last-used file that took `elapsed`.
    pub(crate) fn last_used_saved(&self, elapsed: Duration) {
        if self.enabled {
            self.last_used_save.observe(nanos(elapsed));
        }
    }

    /// Counts a revocation whose wait ended with hosts that had not confirmed it.
    pub(crate) fn unconfirmed(&self) {
        if self.enabled {
            self.unconfirmed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The writer's log, with each sync timed.
    pub(crate) fn timed(self: &Arc<Self>, log: Box<dyn Log>) -> Box<dyn Log> {
        if !self.enabled {
            return log;
        }
        Box::new(SyncTimed {
            inner: log,
            stats: Arc::clone(self),
        })
    }

    fn decisions(&self) -> [u64; DECISIONS] {
        let mut totals = [0; DECISIONS];
        for shard in &self.shards {
            for (total, count) in totals.iter_mut().zip(&shard.decisions) {
                *total += count.load(Ordering::Relaxed);
            }
        }
        totals
    }

    fn verify(&self) -> Histogram {
        let mut counts = vec![0; VERIFY_NS.len() + 1];
        let mut sum = 0;
        for shard in &self.shards {
            shard.verify.add_to(&mut counts, &mut sum);
        }
        Histogram::new(&VERIFY_NS, counts, sum, 1e9)
    }
}

/// A fixed-bucket histogram as read out: Prometheus's, in the metric's base unit.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Histogram {
    /// Each bucket's upper bound (inclusive; the last is `f64::INFINITY`) and how many
    /// observations fell in it and not in the bucket before (not cumulative).
    pub buckets: Vec<(f64, u64)>,
    /// How many observations in all: the buckets' counts added up.
    pub count: u64,
    /// The sum of every observation.
    pub sum: f64,
}

impl Histogram {
    fn new(bounds: &[u64], counts: Vec<u64>, sum: u64, per_unit: f64) -> Histogram {
        // Divided, not multiplied by the inverse: 250 ns is 2.5e-7 s exactly as printed.
        let bounds = bounds.iter().map(|b| *b as f64 / per_unit).chain([f64::INFINITY]);
        Histogram {
            count: counts.iter().sum(),
            buckets: bounds.zip(counts).collect(),
            sum: sum as f64 / per_unit,
        }
    }
}

/// What a store counted since it opened, and where it stands now; see
/// [`KeyStore::statistics`]. Each field's metric is in the README's "Metrics" table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Statistics {
    /// Checks by `/auth` and `ApiKeyLayer` (its services and its `check` calls) that let
    /// the request through. The admin API's checks of admin keys are not counted.
    pub accepted: u64,
    /// Those that refused it, by reason ([`Rejection::code`](crate::Rejection::code),
    /// and the layer's `client_address_unknown`, `/auth`'s `cost_invalid` and
    /// `unavailable`): every reason, counted or not.
    pub refused: Vec<(&'static str, u64)>,
    /// How long each of those checks took, in seconds: reading the key and the client's
    /// address, and the verify.
    pub verify_seconds: Histogram,
    /// The commands in each batch the writer took.
    pub batch_commands: Histogram,
    /// How long each batch took, in seconds, from the writer taking it to its callers
    /// answered (prepared, made durable or appended to the shared log, applied).
    pub commit_seconds: Histogram,
    /// How long each sync of the log took, in seconds (one per batch on a single host;
    /// when idle on a host of a fleet).
    pub sync_seconds: Histogram,
    /// How long each snapshot saved took, in seconds, from its start to its file synced.
    pub snapshot_seconds: Histogram,
    /// The size of the last snapshot saved, in bytes; 0 until one is.
    pub snapshot_bytes: u64,
    /// Snapshots that could not be saved.
    pub snapshot_failures: u64,
    /// How long each save of the last-used stamps and usage counts took, in seconds.
    pub last_used_save_seconds: Histogram,
    /// Keys not deleted, disabled and expired ones included
    /// ([`KeyStore::live_key_count`]).
    pub live_keys: usize,
    /// Records in the log: the last one's sequence number.
    pub log_records: u64,
    /// On a host of a fleet: revocations (deletions, removed addresses, disables, rolls
    /// without grace, a person revoked) whose wait ended with hosts that had not applied
    /// them.
    pub unconfirmed_revocations: u64,
    /// On a host of a fleet: the fleet as this host sees it.
    pub fleet: Option<FleetStatus>,
}

impl KeyStore {
    /// What this store counted since it opened (the decisions of `/auth` and
    /// `ApiKeyLayer`, the writer's batches and syncs, snapshots, saves), and where it
    /// stands (live keys, records, its fleet). The counts stay at zero on a store opened
    /// with [`Builder::statistics`](crate::store::builder::Builder::statistics)`(false)`.
    /// Reads atomics and the state, never the disk; `keyledger serve --metrics-listen`
    /// serves it to Prometheus.
    ///
    /// # Example
    /// ```
    /// let store = keyledger::KeyStore::builder().open_temporary().unwrap();
    /// let stats = store.statistics();
    /// assert_eq!((stats.accepted, stats.log_records, stats.live_keys), (0, 0, 0));
    /// ```
    pub fn statistics(&self) -> Statistics {
        let stats = &self.stats;
        let decisions = stats.decisions();
        Statistics {
            accepted: decisions[ACCEPTED],
            refused: Reason::ALL
                .iter()
                .map(|r| (r.code(), decisions[r.slot()]))
                .collect(),
            verify_seconds: stats.verify(),
            batch_commands: stats.batch.read(1.0),
            commit_seconds: stats.commit.read(1e9),
            sync_seconds: stats.sync.read(1e9),
            snapshot_seconds: stats.snapshot.read(1e9),
            snapshot_bytes: stats.snapshot_bytes.load(Ordering::Relaxed),
            snapshot_failures: stats.snapshot_failures.load(Ordering::Relaxed),
            last_used_save_seconds: stats.last_used_save.read(1e9),
            live_keys: self.live_key_count(),
            log_records: self.last_seq(),
            unconfirmed_revocations: stats.unconfirmed.load(Ordering::Relaxed),
            fleet: self.fleet_status(),
        }
    }

    /// The statistics to count in, for the surfaces above the store.
    #[cfg(feature = "tower")]
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// The writer's log, timing each sync.
struct SyncTimed {
    inner: Box<dyn Log>,
    stats: Arc<Stats>,
}

impl LogRead for SyncTimed {
    fn scan(&self, from: u64) -> Scan<'_> {
        self.inner.scan(from)
    }

    fn floor(&self, key: u64) -> Result<Option<Entry>, LogError> {
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

impl Log for SyncTimed {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), LogError> {
        self.inner.write(batch)
    }

    fn set_meta(&mut self, key: MetaKey, value: &[u8]) -> Result<(), LogError> {
        self.inner.set_meta(key, value)
    }

    fn sync(&mut self) -> Result<(), LogError> {
        let started = Instant::now();
        let synced = self.inner.sync();
        if synced.is_ok() {
            self.stats.sync.observe(nanos(started.elapsed()));
        }
        synced
    }

    /// Timed as [`sync`](Log::sync) is: a fleet host's sync before it announces a head
    /// is a sync of the same log.
    fn sync_handle(&self) -> Result<crate::log::SyncHandle, LogError> {
        let mut inner = self.inner.sync_handle()?;
        let stats = Arc::clone(&self.stats);
        Ok(Box::new(move || {
            let started = Instant::now();
            let synced = inner();
            if synced.is_ok() {
                stats.sync.observe(nanos(started.elapsed()));
            }
            synced
        }))
    }

    fn append_refused(&mut self, records: &[Vec<u8>], keep: u64) -> Result<(), LogError> {
        self.inner.append_refused(records, keep)
    }

    fn reader(&self) -> Box<dyn LogRead> {
        self.inner.reader()
    }

    fn history_writer(&self) -> Result<Box<dyn crate::log::HistoryWrite>, LogError> {
        self.inner.history_writer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_value_in_the_first_bucket_at_or_above_it() {
        let h = Buckets::new(&[10, 20]);
        for v in [0, 10, 11, 20, 21, u64::MAX / 4] {
            h.observe(v);
        }
        let read = h.read(1.0);
        assert_eq!(read.buckets, [(10.0, 2), (20.0, 2), (f64::INFINITY, 2)]);
        assert_eq!(read.count, 6);
    }

    #[cfg(feature = "tower")]
    #[test]
    fn decisions_counted_on_many_threads_add_up_and_off_counts_nothing() {
        let stats = Stats::new(true);
        std::thread::scope(|s| {
            for _ in 0..(SHARDS + 3) {
                s.spawn(|| {
                    for _ in 0..100 {
                        stats.decided(Instant::now(), None);
                        stats.decided(Instant::now(), Some(Reason::UnknownKey));
                    }
                });
            }
        });
        let decisions = stats.decisions();
        assert_eq!(decisions[ACCEPTED], 1900);
        assert_eq!(decisions[Reason::UnknownKey.slot()], 1900);
        assert_eq!(decisions.iter().sum::<u64>(), 3800);
        assert_eq!(stats.verify().count, 3800);

        let off = Stats::new(false);
        assert!(off.clock().is_none());
        off.decided(Instant::now(), None);
        off.committed(3, Duration::from_millis(1));
        assert_eq!(off.decisions().iter().sum::<u64>(), 0);
        assert_eq!(off.batch.read(1.0).count, 0);
    }
}
