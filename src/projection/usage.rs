//! Each key's use: its last-used minute and its requests per hour, accepted and refused by
//! reason, for the last 30 days. Not derived from the log (saved beside it, with the
//! last-used stamps).
//!
//! A verify that passes costs a few atomic operations on the key's 16-byte cell, no lock
//! and no allocation; once per key and hour the hour that ended moves into the key's
//! history (a sparse list, behind one of [`SHARDS`] mutexes picked by key index). A refusal
//! takes that shard's mutex. Nothing here reads a clock: callers pass the minute.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use super::Projection;
use crate::access::Rejection;
use crate::model::id::KeyId;

/// Outcomes counted: 0 accepted, then the reasons of
/// [`REASONS`](crate::model::usage::REASONS) (1 to 6).
pub(crate) const OUTCOMES: usize = 7;
/// Hours kept before the current one: 30 days. Any range starting 30 days ago or later
/// is whole.
pub(crate) const KEPT_HOURS: u32 = 720;
/// Mutexes over the histories: refusals of different keys seldom wait for each other.
const SHARDS: usize = 64;
/// The current hour's count, in the low bits of [`KeyUse::hour`]; the hour is above.
const COUNT_BITS: u32 = 36;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// The code of `rejection`'s reason, if a refusal for it is counted against the key.
fn outcome_of(rejection: &Rejection) -> Option<u8> {
    Some(match rejection {
        Rejection::Expired => 1,
        Rejection::Disabled => 2,
        Rejection::IpNotWhitelisted => 3,
        Rejection::NoWhitelist => 4,
        Rejection::RateLimited { .. } => 5,
        Rejection::UsageExceeded { .. } => 6,
        _ => return None,
    })
}

/// What a verify writes for one key: 16 bytes, four to a cache line.
#[derive(Default)]
#[repr(align(16))]
pub(super) struct KeyUse {
    /// The last successful verify, in minutes since the epoch (0: never); stored at most
    /// once a minute.
    minute: AtomicU32,
    /// The hour (since the epoch) of the last accepted request, above [`COUNT_BITS`], and
    /// that hour's accepted requests not yet in the history, below.
    hour: AtomicU64,
}

/// One count of a key's history: an hour, an outcome and how many. A count past
/// `u32::MAX` takes more than one entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Count {
    /// `hour << 3 | outcome`: sorted by hour, then outcome.
    at: u32,
    n: u32,
}

impl Count {
    fn hour(self) -> u32 {
        self.at >> 3
    }
}

/// One key's counts, sorted, only hours it had requests in.
type History = VecDeque<Count>;

/// The histories of the keys whose index falls in one shard.
type Shard = HashMap<u32, History>;

/// Each key's use, by key index.
pub(super) struct Usage {
    cells: Vec<KeyUse>,
    shards: Box<[CachePadded<Mutex<Shard>>]>,
}

/// A saved count: hour since the epoch, outcome, requests.
pub(crate) type SavedCount = (u32, u8, u64);

impl Usage {
    pub(super) fn new() -> Self {
        Usage {
            cells: Vec::new(),
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(HashMap::new())))
                .collect(),
        }
    }

    /// Room for one more key.
    pub(super) fn push(&mut self) {
        self.cells.push(KeyUse::default());
    }

    fn shard(&self, index: u32) -> MutexGuard<'_, Shard> {
        // A panic while holding it leaves counts, never a broken invariant.
        self.shards[index as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one verify of key `index` at `minute`: for a pass, the last-used stamp and
    /// one atomic add (a new hour moves the last one into the history); for a refusal that
    /// is the key's doing, one count under the key's shard.
    #[inline]
    pub(super) fn count(&self, index: u32, refused: Option<&Rejection>, minute: u32) {
        let Some(cell) = self.cells.get(index as usize) else {
            return;
        };
        let hour = minute / 60;
        match refused {
            None => {
                if cell.minute.load(Ordering::Relaxed) < minute {
                    cell.minute.store(minute, Ordering::Relaxed);
                }
                // A clock that went back (or a thread that saw the minute late) counts in the
                // hour already there.
                if cell.hour.load(Ordering::Relaxed) >> COUNT_BITS >= u64::from(hour) {
                    cell.hour.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.roll(index, hour);
                }
            }
            Some(rejection) => {
                if let Some(outcome) = outcome_of(rejection) {
                    self.refused(index, outcome, hour);
                }
            }
        }
    }

    /// Starts a new hour in key `index`'s cell, with this request, and moves the hour
    /// that ended into the history. Under the shard's mutex, so that a reader sees the
    /// ended hour either in the cell or in the history.
    #[cold]
    #[inline(never)]
    fn roll(&self, index: u32, hour: u32) {
        let cell = &self.cells[index as usize];
        let mut shard = self.shard(index);
        let mut was = cell.hour.load(Ordering::Relaxed);
        loop {
            if was >> COUNT_BITS >= u64::from(hour) {
                cell.hour.fetch_add(1, Ordering::Relaxed);
                return;
            }
            match cell.hour.compare_exchange_weak(
                was,
                (u64::from(hour) << COUNT_BITS) | 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => was = now,
            }
        }
        let ended = u32::try_from(was >> COUNT_BITS).unwrap_or(u32::MAX);
        if was & COUNT_MASK != 0 {
            let history = shard.entry(index).or_default();
            add(history, ended, 0, was & COUNT_MASK);
            prune(history, hour.saturating_sub(KEPT_HOURS));
        }
    }

    #[cold]
    #[inline(never)]
    fn refused(&self, index: u32, outcome: u8, hour: u32) {
        let mut shard = self.shard(index);
        let history = shard.entry(index).or_default();
        add(history, hour, outcome, 1);
        prune(history, hour.saturating_sub(KEPT_HOURS));
    }

    /// Key `index`'s last-used minute (0: never).
    pub(super) fn last_used(&self, index: u32) -> u32 {
        self.cells
            .get(index as usize)
            .map_or(0, |c| c.minute.load(Ordering::Relaxed))
    }

    /// Restores a saved last-used minute; a later one already here is kept.
    pub(super) fn restore_last_used(&self, index: u32, minute: u32) {
        if let Some(cell) = self.cells.get(index as usize) {
            cell.minute.fetch_max(minute, Ordering::Relaxed);
        }
    }

    /// Key `index`'s counts in hours `from..=to`, by hour (only hours with any), each
    /// indexed by outcome.
    pub(super) fn hours(&self, index: u32, from: u32, to: u32) -> Vec<(u32, [u64; OUTCOMES])> {
        let mut out: Vec<(u32, [u64; OUTCOMES])> = Vec::new();
        let put = |out: &mut Vec<(u32, [u64; OUTCOMES])>, hour: u32, outcome: u8, n: u64| {
            let at = out.partition_point(|&(h, _)| h < hour);
            if out.get(at).is_none_or(|&(h, _)| h != hour) {
                out.insert(at, (hour, [0; OUTCOMES]));
            }
            let slot = &mut out[at].1[usize::from(outcome)];
            *slot = slot.saturating_add(n);
        };
        let shard = self.shard(index);
        if let Some(history) = shard.get(&index) {
            for c in history.iter().filter(|c| (from..=to).contains(&c.hour())) {
                put(&mut out, c.hour(), (c.at & 7) as u8, u64::from(c.n));
            }
        }
        if let Some(cell) = self.cells.get(index as usize) {
            let now = cell.hour.load(Ordering::Acquire);
            let hour = u32::try_from(now >> COUNT_BITS).unwrap_or(u32::MAX);
            if now & COUNT_MASK != 0 && (from..=to).contains(&hour) {
                put(&mut out, hour, 0, now & COUNT_MASK);
            }
        }
        out
    }

    /// Every key's counts from hour `oldest` on (the current hour's accepted requests
    /// included), by key index, dropping older ones from memory on the way.
    pub(super) fn to_save(&self, oldest: u32) -> Vec<(u32, Vec<SavedCount>)> {
        let mut out: Vec<(u32, Vec<SavedCount>)> = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.retain(|_, history| {
                prune(history, oldest);
                !history.is_empty()
            });
            for (&index, history) in shard.iter() {
                let mut counts: Vec<SavedCount> = Vec::with_capacity(history.len());
                for c in history {
                    match counts.last_mut() {
                        Some(last) if (last.0, last.1) == (c.hour(), (c.at & 7) as u8) => {
                            last.2 = last.2.saturating_add(u64::from(c.n));
                        }
                        _ => counts.push((c.hour(), (c.at & 7) as u8, u64::from(c.n))),
                    }
                }
                out.push((index, counts));
            }
        }
        out.sort_unstable_by_key(|&(i, _)| i);
        let mut only_current = Vec::new();
        for (index, cell) in (0u32..).zip(&self.cells) {
            let now = cell.hour.load(Ordering::Acquire);
            let hour = u32::try_from(now >> COUNT_BITS).unwrap_or(u32::MAX);
            if now & COUNT_MASK == 0 || hour < oldest {
                continue;
            }
            let current = (hour, 0, now & COUNT_MASK);
            match out.binary_search_by_key(&index, |&(i, _)| i) {
                Ok(found) => {
                    let counts = &mut out[found].1;
                    let at = counts.partition_point(|&(h, o, _)| (h, o) < (hour, 0));
                    match counts.get_mut(at) {
                        Some(c) if (c.0, c.1) == (hour, 0) => c.2 = c.2.saturating_add(current.2),
                        _ => counts.insert(at, current),
                    }
                }
                Err(_) => only_current.push((index, vec![current])),
            }
        }
        out.append(&mut only_current);
        out.sort_unstable_by_key(|&(i, _)| i);
        out
    }

    /// Adds saved counts of key `index` (hours before `oldest`, and unknown outcomes,
    /// skipped) to its history.
    pub(super) fn restore(&self, index: u32, counts: &[SavedCount], oldest: u32) {
        if index as usize >= self.cells.len() {
            return;
        }
        let mut shard = self.shard(index);
        let history = shard.entry(index).or_default();
        for &(hour, outcome, n) in counts {
            if hour >= oldest && usize::from(outcome) < OUTCOMES && hour < (1 << 29) && n > 0 {
                add(history, hour, outcome, n);
            }
        }
        if history.is_empty() {
            shard.remove(&index);
        }
    }
}

impl Projection {
    /// Key `id`'s counts in hours `from..=to` (only hours with any, each indexed by
    /// outcome); `None` for a key that never existed.
    pub(crate) fn usage_hours(&self, id: KeyId, from: u32, to: u32) -> Option<Vec<(u32, [u64; OUTCOMES])>> {
        Some(self.usage.hours(self.key_index(id)?, from, to))
    }

    /// Every key's counts from hour `oldest` on, by id: what is saved beside the log.
    pub(crate) fn usage_to_save(&self, oldest: u32) -> Vec<(KeyId, Vec<SavedCount>)> {
        self.usage
            .to_save(oldest)
            .into_iter()
            .filter_map(|(i, counts)| Some((self.keys.get(i as usize)?.id, counts)))
            .collect()
    }

    /// Adds saved counts to the keys' histories; unknown ids, hours before `oldest` and
    /// unknown outcomes are skipped.
    pub(crate) fn restore_usage(&self, saved: &[(KeyId, Vec<SavedCount>)], oldest: u32) {
        for (id, counts) in saved {
            if let Some(index) = self.key_index(*id) {
                self.usage.restore(index, counts, oldest);
            }
        }
    }
}

/// Adds `n` to `history`'s count of `outcome` in `hour`, keeping it sorted. Counts come
/// mostly for the latest hour: the search starts at the back.
fn add(history: &mut History, hour: u32, outcome: u8, mut n: u64) {
    let at = (hour << 3) | u32::from(outcome);
    let mut i = history.len();
    while i > 0 && history[i - 1].at > at {
        i -= 1;
    }
    if i > 0 && history[i - 1].at == at {
        let last = &mut history[i - 1];
        let take = u32::try_from(n.min(u64::from(u32::MAX - last.n))).unwrap_or(0);
        last.n += take;
        n -= u64::from(take);
    }
    while n > 0 {
        let take = u32::try_from(n.min(u64::from(u32::MAX))).unwrap_or(u32::MAX);
        history.insert(i, Count { at, n: take });
        i += 1;
        n -= u64::from(take);
    }
}

/// Drops the counts of hours before `oldest`.
fn prune(history: &mut History, oldest: u32) {
    while history.front().is_some_and(|c| c.hour() < oldest) {
        history.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_is_sixteen_bytes_and_a_count_eight() {
        assert_eq!(std::mem::size_of::<KeyUse>(), 16);
        assert_eq!(std::mem::size_of::<Count>(), 8);
    }

    #[test]
    fn an_hour_rolls_into_the_history_and_the_current_one_is_read_from_the_cell() {
        let mut usage = Usage::new();
        usage.push();
        usage.push();
        let minute = 1_000 * 60;
        for _ in 0..3 {
            usage.count(1, None, minute);
        }
        usage.count(1, Some(&Rejection::Disabled), minute + 5);
        usage.count(1, Some(&Rejection::UnknownKey), minute + 5);
        usage.count(1, None, minute + 60);
        let hours = usage.hours(1, 0, u32::MAX);
        assert_eq!(
            hours,
            [(1_000, [3, 0, 1, 0, 0, 0, 0]), (1_001, [1, 0, 0, 0, 0, 0, 0])]
        );
        assert_eq!(usage.hours(0, 0, u32::MAX), []);
        assert_eq!(usage.last_used(1), minute + 60);
        let saved = usage.to_save(0);
        assert_eq!(saved, [(1, vec![(1_000, 0, 3), (1_000, 2, 1), (1_001, 0, 1)])]);
    }

    #[test]
    fn a_count_past_u32_takes_two_entries_and_reads_back_whole() {
        let mut history = History::new();
        add(&mut history, 5, 0, u64::from(u32::MAX) + 10);
        add(&mut history, 5, 0, 7);
        add(&mut history, 4, 1, 1);
        assert_eq!(history.len(), 3);
        assert_eq!(history[0].hour(), 4);
        let total: u64 = history
            .iter()
            .filter(|c| c.at == 5 << 3)
            .map(|c| u64::from(c.n))
            .sum();
        assert_eq!(total, u64::from(u32::MAX) + 17);
        prune(&mut history, 5);
        assert_eq!(history.len(), 2);
    }
}
