//! Each key's use: its last-used minute and its requests per hour, accepted and refused by
//! reason, for the last 30 days. Not derived from the log (saved beside it, with the
//! last-used stamps).
//!
//! A verify that passes costs one atomic add on the key's 8-byte use word, which lives in
//! the key's record (the cache line the verify already read), no lock and no allocation;
//! once per key and minute a lock-free stamp, and once per key and hour the hour that
//! ended moves into the key's history (a sparse list, behind one of [`SHARDS`] mutexes picked by key index). A refusal
//! takes that shard's mutex. Nothing here reads a clock: callers pass the minute.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

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
/// Keys whose use words one hold of the state reads when saving: a few milliseconds.
const SCAN_KEYS: usize = 1 << 16;

// A key's use word: the hour of its last accepted request (since the epoch, 24 bits: to
// the year 3883), that request's minute within the hour (6 bits) and the hour's accepted
// requests not yet in the history (34 bits). All zero: never used.
const HOUR_SHIFT: u32 = 40;
const MINUTE_SHIFT: u32 = 34;
const COUNT_MASK: u64 = (1 << MINUTE_SHIFT) - 1;
const STAMP_MASK: u64 = !COUNT_MASK;
/// A count this high moves into the history (the margin below [`COUNT_MASK`] is for
/// threads that checked before one of them reached it).
const FULL: u64 = COUNT_MASK - (1 << 16);
const MAX_HOUR: u32 = (1 << (64 - HOUR_SHIFT)) - 1;

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

/// The stamp of `minute` (since the epoch): its hour and minute within the hour, in the
/// bits a use word keeps them in.
#[inline]
fn stamp(minute: u32) -> u64 {
    let hour = (minute / 60).min(MAX_HOUR);
    (u64::from(hour) << HOUR_SHIFT) | (u64::from(minute % 60) << MINUTE_SHIFT)
}

/// A word's hour.
#[inline]
fn hour_of(word: u64) -> u32 {
    (word >> HOUR_SHIFT) as u32
}

/// What a verify writes for one key: one 8-byte word, kept in the key's own record so
/// that a hit reads and writes one cache line.
#[derive(Default)]
pub(super) struct KeyUse(AtomicU64);

impl Clone for KeyUse {
    /// A copy as the word stands (a key record copied for a snapshot; use is not part of
    /// one).
    fn clone(&self) -> Self {
        KeyUse(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

impl KeyUse {
    /// The last accepted request's minute since the epoch (0: never).
    pub(super) fn last_used(&self) -> u32 {
        let word = self.0.load(Ordering::Relaxed);
        if word & STAMP_MASK == 0 {
            return 0;
        }
        hour_of(word) * 60 + ((word >> MINUTE_SHIFT) & 63) as u32
    }

    /// Restores a saved last-used minute: a later one already here is kept, and so is
    /// an hour's count (restoring happens at open, before any verify counts).
    pub(super) fn restore_last_used(&self, minute: u32) {
        let wanted = stamp(minute);
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
            let same_hour = hour_of(word) == hour_of(wanted);
            (word & STAMP_MASK < wanted && (same_hour || word & COUNT_MASK == 0))
                .then_some(wanted | (word & COUNT_MASK))
        });
    }

    /// The hour of the count in the word, and the count; `None` while it is zero.
    fn current(&self) -> Option<(u32, u64)> {
        let word = self.0.load(Ordering::Acquire);
        (word & COUNT_MASK != 0).then(|| (hour_of(word), word & COUNT_MASK))
    }
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

/// The keys' histories, by key index; the current hour of each is in its [`KeyUse`].
pub(super) struct Usage {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
}

/// A saved count: hour since the epoch, outcome, requests.
pub(crate) type SavedCount = (u32, u8, u64);

/// What is saved of the keys' use: each used key's last-used minute, and each key's
/// counts, by id.
pub(crate) type UseToSave = (Vec<(KeyId, u32)>, Vec<(KeyId, Vec<SavedCount>)>);

impl Usage {
    pub(super) fn new() -> Self {
        Usage {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(HashMap::new())))
                .collect(),
        }
    }

    fn shard(&self, index: u32) -> MutexGuard<'_, Shard> {
        // A panic while holding it leaves counts, never a broken invariant.
        self.shards[index as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one verify of key `index` (its word `cell`) at `minute`: for a pass, one
    /// atomic add when the word already holds this minute (a new minute stamps it, a new
    /// hour moves the last one into the history); for a refusal that is the key's doing,
    /// one count under the key's shard.
    #[inline]
    pub(super) fn count(&self, cell: &KeyUse, index: u32, refused: Option<&Rejection>, minute: u32) {
        match refused {
            None => {
                let word = cell.0.load(Ordering::Relaxed);
                // A clock that went back (or a thread that saw the minute late) counts in
                // the minute and hour already there.
                if word & STAMP_MASK >= stamp(minute) && word & COUNT_MASK < FULL {
                    cell.0.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.advance(cell, index, minute);
                }
            }
            Some(rejection) => {
                if let Some(outcome) = outcome_of(rejection) {
                    self.refused(index, outcome, minute / 60);
                }
            }
        }
    }

    /// Counts a pass in a word that holds an earlier minute or a full count: a later
    /// minute of the same hour (or a clock that went back) is stamped without a lock; a
    /// new hour (or a full count) moves the word's count into the history, under the
    /// shard's mutex, so that a reader sees it either in the word or in the history.
    #[cold]
    #[inline(never)]
    fn advance(&self, cell: &KeyUse, index: u32, minute: u32) {
        let now = stamp(minute);
        let mut shard = None;
        let mut was = cell.0.load(Ordering::Relaxed);
        let rolled = loop {
            let rolls = was & COUNT_MASK >= FULL || hour_of(was) < hour_of(now);
            if rolls && shard.is_none() {
                shard = Some(self.shard(index));
                was = cell.0.load(Ordering::Relaxed);
                continue;
            }
            let count = if rolls { 1 } else { (was & COUNT_MASK) + 1 };
            let next = (was & STAMP_MASK).max(now) | count;
            match cell
                .0
                .compare_exchange_weak(was, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break rolls,
                Err(word) => was = word,
            }
        };
        if let Some(mut shard) = shard.filter(|_| rolled && was & COUNT_MASK != 0) {
            let history = shard.entry(index).or_default();
            add(history, hour_of(was), 0, was & COUNT_MASK);
            prune(history, hour_of(now).saturating_sub(KEPT_HOURS));
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

    /// Key `index`'s counts (its word `cell`) in hours `from..=to`, by hour (only hours
    /// with any), each indexed by outcome.
    pub(super) fn hours(&self, cell: &KeyUse, index: u32, from: u32, to: u32) -> Vec<(u32, [u64; OUTCOMES])> {
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
        if let Some((hour, n)) = cell.current().filter(|&(h, _)| (from..=to).contains(&h)) {
            put(&mut out, hour, 0, n);
        }
        out
    }

    /// The histories in shard `shard` (counts from hour `oldest` on), by key index,
    /// dropping older ones from memory on the way.
    fn shard_histories(&self, shard: usize, oldest: u32) -> Vec<(u32, Vec<SavedCount>)> {
        let mut shard = self.shards[shard].lock().unwrap_or_else(PoisonError::into_inner);
        shard.retain(|_, history| {
            prune(history, oldest);
            !history.is_empty()
        });
        let mut out: Vec<(u32, Vec<SavedCount>)> = Vec::with_capacity(shard.len());
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
        out
    }

    /// Adds saved counts of key `index` (hours before `oldest`, and unknown outcomes,
    /// skipped) to its history.
    pub(super) fn restore(&self, index: u32, counts: &[SavedCount], oldest: u32) {
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
        let index = self.key_index(id)?;
        Some(self.usage.hours(&self.keys[index as usize].used, index, from, to))
    }

    /// Every key's last-used minute and counts from hour `oldest` on, by id: what is
    /// saved beside the log. Read in parts, each under its own hold of the state
    /// (`read()`), so that a writer waits for one part at most, never for a scan of every
    /// key: the histories shard by shard, then the keys' use words [`SCAN_KEYS`] at a time.
    /// A count that moves from a word into its history between the two is saved next time.
    pub(crate) fn use_to_save<G: Deref<Target = Projection>>(read: impl Fn() -> G, oldest: u32) -> UseToSave {
        Self::use_to_save_in_parts(read, oldest, SCAN_KEYS)
    }

    /// [`Projection::use_to_save`], `part` keys at a time.
    fn use_to_save_in_parts<G: Deref<Target = Projection>>(
        read: impl Fn() -> G,
        oldest: u32,
        part: usize,
    ) -> UseToSave {
        let mut histories: Vec<(u32, Vec<SavedCount>)> = Vec::new();
        for shard in 0..SHARDS {
            histories.append(&mut read().usage.shard_histories(shard, oldest));
        }
        histories.sort_unstable_by_key(|&(i, _)| i);
        let (mut last_used, mut usage) = (Vec::new(), Vec::new());
        let mut pending = histories.into_iter().peekable();
        let mut from = 0usize;
        loop {
            let state = read();
            let to = state.keys.len().min(from + part.max(1));
            for (index, key) in (from..to).zip(&state.keys[from..to]) {
                let index = index as u32;
                let minute = key.used.last_used();
                if minute != 0 {
                    last_used.push((key.id, minute));
                }
                let mut counts = match pending.next_if(|&(i, _)| i == index) {
                    Some((_, counts)) => counts,
                    None => Vec::new(),
                };
                if let Some((hour, n)) = key.used.current().filter(|&(h, _)| h >= oldest) {
                    let at = counts.partition_point(|&(h, o, _)| (h, o) < (hour, 0));
                    match counts.get_mut(at) {
                        Some(c) if (c.0, c.1) == (hour, 0) => c.2 = c.2.saturating_add(n),
                        _ => counts.insert(at, (hour, 0, n)),
                    }
                }
                if !counts.is_empty() {
                    usage.push((key.id, counts));
                }
            }
            if to == state.keys.len() {
                return (last_used, usage);
            }
            from = to;
        }
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
    fn a_use_word_is_eight_bytes_and_a_count_eight() {
        assert_eq!(std::mem::size_of::<KeyUse>(), 8);
        assert_eq!(std::mem::size_of::<Count>(), 8);
    }

    #[test]
    fn an_hour_rolls_into_the_history_and_the_current_one_is_read_from_the_word() {
        let usage = Usage::new();
        let cells = [KeyUse::default(), KeyUse::default()];
        let minute = 1_000 * 60;
        for _ in 0..3 {
            usage.count(&cells[1], 1, None, minute);
        }
        usage.count(&cells[1], 1, Some(&Rejection::Disabled), minute + 5);
        usage.count(&cells[1], 1, Some(&Rejection::UnknownKey), minute + 5);
        usage.count(&cells[1], 1, None, minute + 7);
        assert_eq!(cells[1].last_used(), minute + 7);
        usage.count(&cells[1], 1, None, minute + 60);
        let hours = usage.hours(&cells[1], 1, 0, u32::MAX);
        assert_eq!(
            hours,
            [(1_000, [4, 0, 1, 0, 0, 0, 0]), (1_001, [1, 0, 0, 0, 0, 0, 0])]
        );
        assert_eq!(usage.hours(&cells[0], 0, 0, u32::MAX), []);
        assert_eq!((cells[0].last_used(), cells[1].last_used()), (0, minute + 60));
        let mut saved = (0..SHARDS)
            .flat_map(|s| usage.shard_histories(s, 0))
            .collect::<Vec<_>>();
        saved.sort_unstable();
        assert_eq!(saved, [(1, vec![(1_000, 0, 4), (1_000, 2, 1)])]);
        assert_eq!(cells[1].current(), Some((1_001, 1)));
    }

    #[test]
    fn a_clock_that_goes_back_counts_in_the_hour_and_minute_already_stamped() {
        let (usage, cell) = (Usage::new(), KeyUse::default());
        usage.count(&cell, 0, None, 120 * 60 + 30);
        usage.count(&cell, 0, None, 119 * 60 + 59);
        usage.count(&cell, 0, None, 120 * 60 + 10);
        assert_eq!(cell.last_used(), 120 * 60 + 30);
        assert_eq!(usage.hours(&cell, 0, 0, u32::MAX), [(120, [3, 0, 0, 0, 0, 0, 0])]);
    }

    #[test]
    fn a_full_count_moves_into_the_history_and_counting_goes_on() {
        let (usage, cell) = (Usage::new(), KeyUse::default());
        cell.0.store(stamp(600) | (FULL - 1), Ordering::Relaxed);
        for _ in 0..3 {
            usage.count(&cell, 0, None, 600);
        }
        assert_eq!(
            usage.hours(&cell, 0, 0, u32::MAX),
            [(10, [FULL + 2, 0, 0, 0, 0, 0, 0])]
        );
        assert_eq!(cell.last_used(), 600);
    }

    #[test]
    fn restoring_a_last_used_minute_keeps_a_later_one() {
        let cell = KeyUse::default();
        cell.restore_last_used(5_000);
        cell.restore_last_used(4_000);
        assert_eq!(cell.last_used(), 5_000);
        cell.restore_last_used(5_003);
        assert_eq!(cell.last_used(), 5_003);
    }

    #[test]
    fn concurrent_passes_of_one_key_across_minutes_and_hours_are_all_counted() {
        let (usage, cell) = (Usage::new(), KeyUse::default());
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let (usage, cell) = (&usage, &cell);
                s.spawn(move || {
                    for i in 0..20_000u32 {
                        usage.count(cell, 3, None, 60 * 100 + (i / 100) + t % 2);
                    }
                });
            }
        });
        let total: u64 = usage.hours(&cell, 3, 0, u32::MAX).iter().map(|(_, c)| c[0]).sum();
        assert_eq!(total, 80_000);
    }

    /// Saving reads the keys a part at a time: every key's stamp and counts come out
    /// once, in order, whatever the part size, the current hour merged with its history.
    #[test]
    fn saving_in_parts_gives_every_key_once_with_its_history_and_current_hour() {
        use crate::chain::Chain;
        use crate::ledger::{Command, Ledger, Op};
        use crate::model::actor::Actor;
        use crate::model::key::NewKey;
        use rand::SeedableRng;

        let ledger = Ledger::new(Chain::new(None));
        let mut ids = rand::rngs::StdRng::seed_from_u64(3);
        let mut keys = Vec::new();
        for i in 0..10u8 {
            let op = Op::Create {
                new: NewKey::new(format!("k{i}")).role("bot").validated().unwrap(),
                hash: crate::model::token::KeyHash([i; 32]),
                tail: *b"abcd",
            };
            let command = Command {
                actor: Actor::admin("alice"),
                via: None,
                op,
            };
            let prepared = ledger.prepare(&[&command], &mut ids);
            ledger.accept(&prepared.entries).unwrap();
            keys.push(prepared.outcomes[0].as_ref().unwrap().0);
        }
        let minute = 500 * 60;
        {
            let state = ledger.read();
            // Key i: i requests in hour 500, then key 3 one in hour 501 and a refusal.
            for (i, key) in state.keys.iter().enumerate() {
                for _ in 0..i {
                    state.usage.count(&key.used, i as u32, None, minute + 1);
                }
            }
            state.usage.count(&state.keys[3].used, 3, None, minute + 61);
            state
                .usage
                .count(&state.keys[3].used, 3, Some(&Rejection::Disabled), minute + 61);
        }
        for part in [1, 3, 10, 64] {
            let (last_used, usage) = Projection::use_to_save_in_parts(|| ledger.read(), 0, part);
            let expected_stamps: Vec<(KeyId, u32)> = (1..10)
                .map(|i| (keys[i], if i == 3 { minute + 61 } else { minute + 1 }))
                .collect();
            assert_eq!(last_used, expected_stamps, "part {part}");
            let mut expected: Vec<(KeyId, Vec<SavedCount>)> =
                (1..10).map(|i| (keys[i], vec![(500, 0, i as u64)])).collect();
            expected[2].1.extend([(501, 0, 1), (501, 2, 1)]);
            assert_eq!(usage, expected, "part {part}");
        }
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
