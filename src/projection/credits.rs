//! Credits in memory: each credited key's cell (its count, its next refill, what the log
//! set, and the slot of its limiter if it also has rate limits: one cache line), spent on
//! the verify path with a few atomic operations and no lock or allocation.
//!
//! A key record's `meter` names either a limiter (a key with rate limits only) or, with
//! [`CREDITED`] set, a credit cell here, which names the key's limiter in turn. The count
//! is not in the log (one record per request would make verify a write): the log holds
//! what admins set and added, the count spent since lives in the cell and is saved beside
//! the log (see `persist::credits`), and a refill happens on the first request past its
//! time.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::interned::Interned;
use super::share::{CreditShare, Gate, ShareGate};
use super::{NEVER, Projection, too_long};
use crate::access::Rejection;
use crate::model::credits::{Credits, MAX_CREDITS, Refill};
use crate::model::error::Error;
use crate::model::id::KeyId;

/// The bit of a key record's `meter` that says it names a credit cell.
pub(super) const CREDITED: u32 = 1 << 31;

/// A credited key's count and settings: one cache line. Only `remaining` and
/// `next_refill` change on the verify path; the rest changes with records, under the
/// writer's lock.
#[repr(align(64))]
pub(super) struct CreditCell {
    /// What is left to spend.
    remaining: AtomicU64,
    /// When the next refill is due (microseconds since the epoch), [`NEVER`] for none.
    next_refill: AtomicI64,
    /// The count the last `credits_set` record set.
    granted: u64,
    /// The credits added since.
    topped: u64,
    /// The time of that record: refills fall at whole periods after it.
    anchor: i64,
    /// Its sequence number: a saved count belongs to the setting it was spent from.
    set_seq: u64,
    /// The refill's amount, 0 for none.
    refill_amount: u64,
    /// The key's limiter, 0 for none.
    pub(super) limiter: u32,
    refill_every_secs: u32,
}

impl CreditCell {
    /// The cell kept at slot 0, which no key holds (so that slot numbers start at 1, as
    /// the limiters' do, and a key with both can hold the same number in each).
    fn unused() -> Self {
        CreditCell {
            remaining: AtomicU64::new(0),
            next_refill: AtomicI64::new(NEVER),
            granted: 0,
            topped: 0,
            anchor: 0,
            set_seq: 0,
            refill_amount: 0,
            limiter: 0,
            refill_every_secs: 0,
        }
    }

    fn new(credits: &Credits, at: i64, seq: u64, limiter: u32) -> Self {
        let cell = CreditCell {
            remaining: AtomicU64::new(credits.remaining),
            next_refill: AtomicI64::new(NEVER),
            granted: credits.remaining,
            topped: 0,
            anchor: at,
            set_seq: seq,
            refill_amount: credits.refill.map_or(0, |r| r.amount),
            limiter,
            refill_every_secs: credits.refill.map_or(0, |r| r.every_secs),
        };
        cell.next_refill.store(cell.refill_after(at), Ordering::Relaxed);
        cell
    }

    fn every_micros(&self) -> i64 {
        i64::from(self.refill_every_secs) * 1_000_000
    }

    /// The first refill time strictly after `now`: a whole number of periods after the
    /// anchor. [`NEVER`] without a refill.
    fn refill_after(&self, now: i64) -> i64 {
        let every = self.every_micros();
        if self.refill_amount == 0 || every <= 0 {
            return NEVER;
        }
        let periods = (now.saturating_sub(self.anchor)).max(0) / every + 1;
        self.anchor.saturating_add(periods.saturating_mul(every))
    }

    /// Spends `cost` at `now` (microseconds since the epoch), refilling first if a refill
    /// fell due; how many remain, or when more come.
    #[inline]
    fn spend(&self, cost: u64, now: i64) -> Result<u64, Rejection> {
        let due = self.next_refill.load(Ordering::Relaxed);
        if now >= due {
            self.refill(due, now);
        }
        match self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(cost)
            }) {
            Ok(before) => Ok(before - cost),
            Err(_) => {
                let next = self.next_refill.load(Ordering::Relaxed);
                // The verify path reads a coarse clock, up to a kernel tick behind the
                // precise one that stamped the record setting the credits: a reading before
                // that record counts as its time, so the wait never exceeds one period.
                let from = now.max(self.anchor);
                Err(Rejection::UsageExceeded {
                    retry_after: (next != NEVER)
                        .then(|| Duration::from_micros(next.saturating_sub(from).max(0).unsigned_abs())),
                })
            }
        }
    }

    /// [`CreditCell::spend`] on a host of a fleet: within this host's allowance (its share
    /// of what was left when it was last granted), counted for the next report.
    #[inline]
    fn spend_shared(
        &self,
        share: &CreditShare,
        gate: &ShareGate,
        cost: u64,
        now: i64,
    ) -> Result<u64, Rejection> {
        let g = gate.read();
        if share.epoch.load(Ordering::Relaxed) != g.epoch {
            self.grant(share, g);
        }
        if share
            .allowance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| a.checked_sub(cost))
            .is_err()
        {
            return Err(Rejection::UsageExceeded {
                retry_after: Some(gate.interval()),
            });
        }
        match self.spend(cost, now) {
            Ok(left) => {
                share.unreported.fetch_add(cost, Ordering::Relaxed);
                Ok(left)
            }
            Err(refused) => {
                share.allowance.fetch_add(cost, Ordering::Relaxed);
                Err(refused)
            }
        }
    }

    /// Grants this host its share of the credits again for round `gate.epoch`: as for a
    /// limit (`Limiter::grant`), one `N`th of what is left less what the others may have
    /// spent meanwhile; outside an open round, only ever lowered.
    #[cold]
    fn grant(&self, share: &CreditShare, gate: Gate) {
        let seen = share.epoch.load(Ordering::Relaxed);
        if seen == gate.epoch
            || share
                .epoch
                .compare_exchange(seen, gate.epoch, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let mine = share.unreported.load(Ordering::Relaxed);
        let left = self.left().saturating_sub(mine.saturating_mul(gate.hosts - 1));
        let granted = left / gate.hosts;
        if gate.open {
            share.allowance.store(granted, Ordering::Relaxed);
        } else {
            share.allowance.fetch_min(granted, Ordering::Relaxed);
        }
    }

    /// What is left to spend now.
    pub(super) fn left(&self) -> u64 {
        self.remaining.load(Ordering::Relaxed)
    }

    /// Another host's spending: taken off, down to zero.
    pub(super) fn charge(&self, cost: u64) {
        let _ = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(cost))
            });
    }

    /// The refill due at `due`: whichever caller moves the due time on refills, once.
    #[cold]
    fn refill(&self, due: i64, now: i64) {
        let next = self.refill_after(now);
        if self
            .next_refill
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.remaining.fetch_max(self.refill_amount, Ordering::Relaxed);
        }
    }

    /// The setting as the log stands: the count set, plus what was added since.
    fn held(&self) -> u64 {
        self.granted.saturating_add(self.topped).min(MAX_CREDITS)
    }

    fn setting(&self) -> Credits {
        Credits {
            remaining: self.granted,
            refill: (self.refill_amount != 0).then_some(Refill {
                amount: self.refill_amount,
                every_secs: self.refill_every_secs,
            }),
        }
    }
}

/// A credited key's count as it stands: for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditsView {
    /// What is left to spend now (on this host).
    pub remaining: u64,
    /// How the credits refill, if they do.
    pub refill: Option<Refill>,
    /// When the next refill is due, if there is one (none in time travel: refills are
    /// not records).
    pub next_refill_at: Option<std::time::SystemTime>,
}

/// What a snapshot keeps of a credited key: what the log set (the count spent is saved
/// apart, see `persist::credits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CreditsData {
    pub(crate) set: Credits,
    pub(crate) topped: u64,
    pub(crate) anchor: i64,
    pub(crate) set_seq: u64,
}

/// A credited key's count as saved beside the log: `remaining` and `next_refill` as
/// they stood, for the setting of record `set_seq` with `topped` added since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SavedCredits {
    pub(crate) id: KeyId,
    pub(crate) set_seq: u64,
    pub(crate) topped: u64,
    pub(crate) remaining: u64,
    pub(crate) next_refill: i64,
}

/// The credit cells of the keys that have credits, and the key each belongs to (so that
/// saving the counts reads the credited keys, not every key); freed cells are reused.
pub(super) struct CreditCells {
    cells: Vec<CreditCell>,
    /// Each cell's key index, [`FREE`] for a freed cell.
    owners: Vec<u32>,
    free: Vec<u32>,
}

/// [`CreditCells::owners`] of a freed cell.
const FREE: u32 = u32::MAX;

/// Slot `paired` of a pool of `len` slots with free list `free`, if it can be taken: it
/// is the next one, or a free one (`is_free`); taken off the free list. `None` for 0.
pub(super) fn take_paired(
    free: &mut Vec<u32>,
    len: usize,
    paired: u32,
    is_free: impl Fn(usize) -> bool,
) -> Option<u32> {
    let at = paired as usize;
    if paired == 0 || at > len {
        return None;
    }
    if at == len {
        return Some(paired);
    }
    if !is_free(at) {
        return None;
    }
    let found = free.iter().rposition(|&s| s == paired)?;
    free.swap_remove(found);
    Some(paired)
}

impl CreditCells {
    pub(super) fn new() -> Self {
        CreditCells {
            cells: vec![CreditCell::unused()],
            owners: vec![FREE],
            free: Vec::new(),
        }
    }

    /// A cell for key `index`: slot `paired` (the key's limiter's, 0 for none) when it is
    /// free or next, so that verify finds both from the key record; else any.
    fn acquire(&mut self, cell: CreditCell, index: u32, paired: u32, seq: u64) -> Result<u32, Error> {
        let len = self.cells.len();
        let taken = take_paired(&mut self.free, len, paired, |s| self.owners.get(s) == Some(&FREE))
            .or_else(|| self.free.pop());
        let slot = match taken {
            Some(slot) => slot,
            None => u32::try_from(len)
                .ok()
                .filter(|s| s & CREDITED == 0)
                .ok_or_else(|| too_long(seq))?,
        };
        if slot as usize == len {
            self.cells.push(cell);
            self.owners.push(index);
        } else {
            self.cells[slot as usize] = cell;
            self.owners[slot as usize] = index;
        }
        Ok(slot)
    }

    /// Cell `slot` goes back to the free cells.
    fn release(&mut self, slot: u32) {
        if let Some(owner) = self.owners.get_mut(slot as usize) {
            *owner = FREE;
            self.free.push(slot);
        }
    }

    #[inline]
    pub(super) fn get(&self, slot: u32) -> Option<&CreditCell> {
        self.cells.get(slot as usize)
    }

    pub(super) fn get_mut(&mut self, slot: u32) -> Option<&mut CreditCell> {
        self.cells.get_mut(slot as usize)
    }
}

/// Every credits value an audit row names (a `credits_set` record's setting, none for
/// removed, or a `credits_added` record's amount as a count), each once.
pub(super) struct CreditLog(Interned<Option<Credits>>);

impl CreditLog {
    pub(super) fn new() -> Self {
        CreditLog(Interned::new(None))
    }

    /// The index of `value`, added if new.
    pub(super) fn push(&mut self, value: Option<&Credits>, seq: u64) -> Result<u32, Error> {
        self.0.intern(value.copied(), seq)
    }

    pub(super) fn get(&self, i: u32) -> Option<Credits> {
        self.0.get(i).copied().flatten()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// The values from `part`, for a snapshot.
    pub(super) fn data(&self, part: std::ops::Range<usize>) -> Vec<Option<Credits>> {
        self.0.part(part).to_vec()
    }
}

impl Projection {
    /// The credit cell of key `index`, if it has credits.
    fn credit_cell(&self, index: u32) -> Option<&CreditCell> {
        let meter = self.keys.get(index as usize)?.meter;
        (meter & CREDITED != 0)
            .then(|| self.credits.get(meter & !CREDITED))
            .flatten()
    }

    /// The slot of key `index`'s limiter: in its record, or in its credit cell.
    pub(super) fn limiter_slot(&mut self, index: u32) -> &mut u32 {
        let meter = &mut self.keys[index as usize].meter;
        if *meter & CREDITED != 0
            && let Some(cell) = self.credits.get_mut(*meter & !CREDITED)
        {
            return &mut cell.limiter;
        }
        meter
    }

    /// Key `index` now holds `credits` (none: unlimited), set by record `seq` at `at`:
    /// its count starts again from the setting.
    pub(super) fn set_credits(
        &mut self,
        index: u32,
        credits: Option<&Credits>,
        at: i64,
        seq: u64,
    ) -> Result<(), Error> {
        let i = index as usize;
        let meter = self.keys[i].meter;
        let limiter = if meter & CREDITED != 0 {
            let slot = meter & !CREDITED;
            let limiter = self.credits.get(slot).map_or(0, |c| c.limiter);
            self.credits.release(slot);
            limiter
        } else {
            meter
        };
        self.keys[i].meter = match credits {
            Some(credits) if self.cold[i].deleted == super::LIVE => {
                let cell = CreditCell::new(credits, at, seq, limiter);
                self.credits.acquire(cell, index, limiter, seq)? | CREDITED
            }
            _ => limiter,
        };
        self.share_key(index);
        Ok(())
    }

    /// `amount` more credits for key `index`.
    pub(super) fn add_credits(&mut self, index: u32, amount: u64) {
        let meter = self.keys[index as usize].meter;
        if meter & CREDITED != 0
            && let Some(cell) = self.credits.get_mut(meter & !CREDITED)
        {
            cell.topped = cell.topped.saturating_add(amount).min(MAX_CREDITS);
            let left = cell.remaining.get_mut();
            *left = left.saturating_add(amount).min(MAX_CREDITS);
        }
    }

    /// A deleted key's credit cell goes back to the free cells.
    pub(super) fn drop_credits(&mut self, index: u32) {
        let meter = self.keys[index as usize].meter;
        if meter & CREDITED != 0 {
            self.credits.release(meter & !CREDITED);
            self.keys[index as usize].meter = 0;
        }
    }

    /// One request costing `cost` of a key whose `meter` is not 0, at `now`: under its
    /// rate limits, then from its credits (a request refused for credits takes nothing
    /// from the limits). Where the key stands, or why it is refused.
    #[inline]
    pub(super) fn meter(
        &self,
        meter: u32,
        cost: u64,
        steady: u64,
        now: i64,
    ) -> Result<(Option<crate::access::RateStatus>, Option<u64>), Rejection> {
        if meter & CREDITED == 0 {
            return Ok((Some(self.admit(meter, steady)?), None));
        }
        let slot = meter & !CREDITED;
        let cell = self.credits.get(slot).ok_or(Rejection::UnknownKey)?;
        // A key with credits and limits mostly holds the same slot in both: tested this
        // way, the limiter's line is read while the credit cell's still comes (its address
        // does not wait for the cell's `limiter`).
        let rate = match cell.limiter {
            0 => None,
            limiter if limiter == slot => Some(self.admit(slot, steady)?),
            limiter => Some(self.admit(limiter, steady)?),
        };
        let spent = match (&self.shares.gate, self.shares.credits.get(slot as usize)) {
            (Some(gate), Some(share)) => cell.spend_shared(share, gate, cost, now),
            _ => cell.spend(cost, now),
        };
        match spent {
            Ok(left) => Ok((rate, Some(left))),
            Err(refused) => {
                if cell.limiter != 0 {
                    self.refund(cell.limiter);
                }
                Err(refused)
            }
        }
    }

    /// Key `index`'s credits as they stand, if it has credits.
    pub(crate) fn credits_view(&self, index: u32) -> Option<CreditsView> {
        let cell = self.credit_cell(index)?;
        let next = cell.next_refill.load(Ordering::Relaxed);
        Some(CreditsView {
            remaining: cell.remaining.load(Ordering::Relaxed),
            refill: cell.setting().refill,
            next_refill_at: (next != NEVER).then(|| crate::clock::system_time(next)),
        })
    }

    /// What the log holds of key `index`'s credits: the count set plus every top-up
    /// since, for the access rules.
    pub(super) fn credits_held(&self, index: u32) -> Option<u64> {
        self.credit_cell(index).map(CreditCell::held)
    }

    /// Key `index`'s credits as a snapshot keeps them.
    pub(super) fn credits_data(&self, index: u32) -> Option<CreditsData> {
        self.credit_cell(index).map(|cell| CreditsData {
            set: cell.setting(),
            topped: cell.topped,
            anchor: cell.anchor,
            set_seq: cell.set_seq,
        })
    }

    /// Restores key `index`'s credits from a snapshot: the count the log holds.
    pub(super) fn restore_credits(&mut self, index: u32, data: &CreditsData) -> Result<(), Error> {
        self.set_credits(index, Some(&data.set), data.anchor, data.set_seq)?;
        self.add_credits(index, data.topped);
        Ok(())
    }

    /// Every credited live key's count, to save beside the log. Only the credited keys'
    /// cells are read: the work grows with them, not with the store.
    pub(crate) fn saved_credits(&self) -> Vec<SavedCredits> {
        self.credits
            .cells
            .iter()
            .zip(&self.credits.owners)
            .filter_map(|(cell, &owner)| {
                let key = self.keys.get(owner as usize)?;
                Some(SavedCredits {
                    id: key.id,
                    set_seq: cell.set_seq,
                    topped: cell.topped,
                    remaining: cell.remaining.load(Ordering::Relaxed),
                    next_refill: cell.next_refill.load(Ordering::Relaxed),
                })
            })
            .collect()
    }

    /// Restores counts saved by [`Projection::saved_credits`]: a count applies only to
    /// the setting it was spent from (a later `credits_set` starts again), with what was
    /// added since it was saved; unknown keys and other settings are skipped.
    pub(crate) fn restore_saved_credits(&self, saved: &[SavedCredits]) {
        for s in saved {
            let Some(cell) = self.key_index(s.id).and_then(|i| self.credit_cell(i)) else {
                continue;
            };
            if cell.set_seq != s.set_seq || s.topped > cell.topped {
                continue;
            }
            let added = cell.topped - s.topped;
            let remaining = s.remaining.saturating_add(added).min(MAX_CREDITS);
            cell.remaining.store(remaining, Ordering::Relaxed);
            // A saved due time is trusted only if it is one of this setting's.
            let every = cell.every_micros();
            if cell.refill_amount != 0
                && every > 0
                && s.next_refill > cell.anchor
                && (s.next_refill - cell.anchor) % every == 0
            {
                cell.next_refill.store(s.next_refill, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    fn cell(spec: &str, refill: Option<&str>, at: i64) -> CreditCell {
        let mut credits = Credits::new(spec.parse().unwrap()).unwrap();
        if let Some(r) = refill {
            credits = credits.refill(r.parse().unwrap());
        }
        CreditCell::new(&credits, at, 1, 0)
    }

    #[test]
    fn a_cell_takes_the_slot_of_its_keys_limiter_when_that_is_next_or_free() {
        let mut pool = CreditCells::new();
        let new = || cell("5", None, 0);
        assert_eq!(pool.acquire(new(), 10, 1, 1).unwrap(), 1, "the next slot");
        assert_eq!(pool.acquire(new(), 11, 0, 1).unwrap(), 2, "no limiter: any");
        assert_eq!(pool.acquire(new(), 12, 9, 1).unwrap(), 3, "past the end: any");
        pool.release(1);
        pool.release(2);
        assert_eq!(pool.acquire(new(), 13, 2, 1).unwrap(), 2, "a freed slot");
        assert_eq!(pool.acquire(new(), 14, 3, 1).unwrap(), 1, "slot 3 is held: any");
        assert_eq!(pool.owners, [FREE, 14, 13, 12]);
        assert!(pool.free.is_empty());
    }

    #[test]
    fn pairing_takes_slot_zero_never_and_a_held_slot_never() {
        let mut free = vec![4, 2];
        assert_eq!(take_paired(&mut free, 5, 0, |_| true), None);
        assert_eq!(
            take_paired(&mut free, 5, 3, |_| true),
            None,
            "not on the free list"
        );
        assert_eq!(take_paired(&mut free, 5, 2, |_| false), None, "held");
        assert_eq!(take_paired(&mut free, 5, 2, |_| true), Some(2));
        assert_eq!(free, [4]);
        assert_eq!(take_paired(&mut free, 5, 5, |_| false), Some(5), "the next one");
        assert_eq!(take_paired(&mut free, 5, 6, |_| true), None);
    }

    #[test]
    fn a_credit_cell_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<CreditCell>(), 64);
    }

    #[test]
    fn each_request_spends_its_cost_and_none_passes_past_zero() {
        let c = cell("5", None, 0);
        assert_eq!(c.spend(1, SECOND), Ok(4));
        assert_eq!(c.spend(3, SECOND), Ok(1));
        assert_eq!(
            c.spend(2, SECOND),
            Err(Rejection::UsageExceeded { retry_after: None }),
            "a cost above what is left takes nothing"
        );
        assert_eq!(c.spend(0, SECOND), Ok(1), "a cost of 0 only looks");
        assert_eq!(c.spend(1, SECOND), Ok(0));
        assert!(c.spend(1, SECOND).is_err());
    }

    #[test]
    fn credits_refill_at_whole_periods_after_they_were_set_and_say_when() {
        let set_at = 1_000 * SECOND;
        let c = cell("2", Some("3/1m"), set_at);
        assert_eq!(c.spend(2, set_at + SECOND), Ok(0));
        assert_eq!(
            c.spend(1, set_at + 20 * SECOND),
            Err(Rejection::UsageExceeded {
                retry_after: Some(Duration::from_secs(40))
            })
        );
        // At the minute: back up to 3.
        assert_eq!(c.spend(1, set_at + 60 * SECOND), Ok(2));
        // Five idle minutes are one refill, not five: back up to 3, no more.
        assert_eq!(c.spend(1, set_at + 6 * 60 * SECOND + 1), Ok(2));
        assert_eq!(c.next_refill.load(Ordering::Relaxed), set_at + 7 * 60 * SECOND);
    }

    /// What `tests/serve.rs` once saw as `Retry-After: 3601` for hourly credits: a request
    /// within a tick of the record that set them read the coarse clock before the record's
    /// time.
    #[test]
    fn a_clock_reading_before_the_credits_were_set_never_waits_more_than_a_period() {
        let set_at = 1_000 * SECOND;
        let c = cell("1", Some("1/1h"), set_at);
        let tick_before = set_at - 4_000;
        assert_eq!(c.spend(1, tick_before), Ok(0));
        assert_eq!(
            c.spend(1, tick_before),
            Err(Rejection::UsageExceeded {
                retry_after: Some(Duration::from_secs(3600))
            })
        );
    }

    #[test]
    fn a_refill_never_lowers_a_count_topped_up_past_it() {
        let c = cell("10", Some("3/1m"), 0);
        assert_eq!(c.spend(1, 61 * SECOND), Ok(9));
    }

    #[test]
    fn threads_spending_one_key_never_pass_more_than_its_credits() {
        let c = std::sync::Arc::new(cell("1000", None, 0));
        let passed = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        if c.spend(1, SECOND).is_ok() {
                            passed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(passed.into_inner(), 1000);
    }

    #[test]
    fn threads_at_a_refill_refill_once() {
        let c = std::sync::Arc::new(cell("0", Some("100/1m"), 0));
        let passed = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if c.spend(1, 61 * SECOND).is_ok() {
                            passed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(passed.into_inner(), 100);
    }
}
