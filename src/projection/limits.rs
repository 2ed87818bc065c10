//! Rate limits in memory: each limited key's limiter (its limits and their cells, one
//! cache line), checked on the verify path with a few atomic operations and no lock or
//! allocation; and the interned lists of limits that creations, changes, listings and
//! snapshots name by index.
//!
//! A limit is a GCRA cell (the generic cell rate algorithm, a token bucket kept as one
//! time): requests are spaced `T = ⌈window / limit⌉` apart on average, with bursts of up
//! to `limit` after a quiet spell (`τ = (limit − 1)·T`). See `docs/design.md`, "Rate
//! limits", for exactly what it admits. The cells run on the store's steady clock and are
//! not part of the log: a restart starts every bucket full.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::interned::Interned;
use super::share::{Gate, ShareCell};
use super::{Projection, too_long};
use crate::access::{RateStatus, Rejection};
use crate::model::error::Error;
use crate::model::limit::{LimitList, MAX_RATE_LIMITS, NO_LIMIT, RateLimit, in_list, list_of};

/// A limited key's limits and cells: one cache line.
#[repr(align(64))]
pub(super) struct Limiter {
    list: LimitList,
    /// Each limit's theoretical arrival time: microseconds on the steady clock.
    tat: [AtomicU64; MAX_RATE_LIMITS],
}

impl Limiter {
    fn new(list: LimitList) -> Self {
        Limiter {
            list,
            tat: Default::default(),
        }
    }

    /// Admits one request at `now` under every limit, or says when to come back. A request
    /// refused by one limit takes nothing from the others.
    #[inline]
    fn admit(&self, now: u64) -> Result<RateStatus, Rejection> {
        let start = RateStatus {
            limit: NO_LIMIT,
            remaining: u32::MAX,
            reset: Duration::ZERO,
        };
        take(&self.list, &self.tat, now, spacing, start)
    }
}

/// Takes one request at `now` from each limit's cell in `cells`, each spaced by `spacing`
/// (`T`, `τ`), keeping in `closest` the limit closest to running out; or, past one of them,
/// gives back what the earlier cells took and says when to come back.
#[inline]
fn take(
    list: &LimitList,
    cells: &[AtomicU64; MAX_RATE_LIMITS],
    now: u64,
    spacing: impl Fn(&RateLimit) -> (u64, u64),
    mut closest: RateStatus,
) -> Result<RateStatus, Rejection> {
    for (i, limit) in list.iter().enumerate() {
        if limit.limit == 0 {
            break;
        }
        let (t, tau) = spacing(limit);
        let cell = &cells[i];
        let mut tat = cell.load(Ordering::Relaxed);
        let new = loop {
            let base = tat.max(now);
            if base - now > tau {
                for (earlier, cell) in list[..i].iter().zip(cells) {
                    cell.fetch_sub(spacing(earlier).0, Ordering::Relaxed);
                }
                return Err(Rejection::RateLimited {
                    limit: *limit,
                    retry_after: Duration::from_micros(base - now - tau),
                });
            }
            match cell.compare_exchange_weak(tat, base + t, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break base + t,
                Err(actual) => tat = actual,
            }
        };
        // `new - now <= tau + t = limit·t`: what is left of the burst.
        let remaining = u32::try_from((now + tau + t - new) / t).unwrap_or(u32::MAX);
        if remaining < closest.remaining {
            closest = RateStatus {
                limit: *limit,
                remaining,
                reset: Duration::from_micros(new - now),
            };
        }
    }
    Ok(closest)
}

impl Limiter {
    /// Takes one request back from every limit.
    fn refund(&self) {
        for (limit, cell) in self.list.iter().zip(&self.tat) {
            if limit.limit == 0 {
                break;
            }
            cell.fetch_sub(spacing(limit).0, Ordering::Relaxed);
        }
    }

    /// [`Limiter::admit`] on a host of a fleet: the key's own cells (what every host
    /// reported, and this host's requests) must admit it, and so must this host's share
    /// (one cell per limit spacing requests `N·T` apart); the request is then counted for
    /// the next report. A refusal takes nothing from any cell.
    #[inline]
    fn admit_shared(&self, share: &ShareCell, gate: Gate, now: u64) -> Result<RateStatus, Rejection> {
        if share.epoch.load(Ordering::Relaxed) != gate.epoch {
            self.grant(share, gate, now);
        }
        let status = self.admit(now)?;
        let hosts = gate.hosts;
        let status =
            take(&self.list, &share.tat, now, |l| share_spacing(l, hosts), status).inspect_err(|_| {
                self.refund();
            })?;
        share.unreported.fetch_add(1, Ordering::Relaxed);
        Ok(status)
    }

    /// Grants this host its share again for round `gate.epoch`: of what the key's cells
    /// say is left, less what the other hosts may have admitted meanwhile (as many as this
    /// host admitted since its last report, each), one `N`th. While the round is not open,
    /// a share is only ever lowered. See `docs/design.md` for why this is exact.
    #[cold]
    fn grant(&self, share: &ShareCell, gate: Gate, now: u64) {
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
        for (limit, (tat, cell)) in self.list.iter().zip(self.tat.iter().zip(&share.tat)) {
            if limit.limit == 0 {
                break;
            }
            let t = spacing(limit).0;
            let others = mine.saturating_mul(gate.hosts - 1).saturating_mul(t);
            let granted = tat.load(Ordering::Relaxed).max(now).saturating_add(others);
            if gate.open {
                cell.store(granted, Ordering::Relaxed);
            } else {
                cell.fetch_max(granted, Ordering::Relaxed);
            }
        }
    }

    /// Another host's `requests`, reported at `now`: every limit moves on by
    /// `requests · T`, whatever it allows.
    fn charge(&self, requests: u64, now: u64) {
        for (limit, cell) in self.list.iter().zip(&self.tat) {
            if limit.limit == 0 {
                break;
            }
            let step = spacing(limit).0.saturating_mul(requests);
            let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(tat.max(now).saturating_add(step))
            });
        }
    }
}

/// A host's share of a limit among `hosts`: its emission interval `N·T` and tolerance
/// `(L − N)·T` (a burst of `L / N`, at least one request).
#[inline]
fn share_spacing(limit: &RateLimit, hosts: u64) -> (u64, u64) {
    let (t, tau) = spacing(limit);
    let n = u64::from(limit.limit).max(1);
    (
        t.saturating_mul(hosts),
        (t * n).saturating_sub(t.saturating_mul(hosts)).min(tau),
    )
}

/// A limit's emission interval `T` and burst tolerance `τ`, in microseconds.
#[inline]
fn spacing(limit: &RateLimit) -> (u64, u64) {
    let n = u64::from(limit.limit).max(1);
    let t = limit.window_micros().div_ceil(n).max(1);
    (t, t * (n - 1))
}

/// The limiters of the keys that have limits. Slot 0 is never used (a key record's
/// `limiter` 0 means none); freed slots are reused.
pub(super) struct Limiters {
    slots: Vec<Limiter>,
    free: Vec<u32>,
}

impl Limiters {
    pub(super) fn new() -> Self {
        Limiters {
            slots: vec![Limiter::new([NO_LIMIT; MAX_RATE_LIMITS])],
            free: Vec::new(),
        }
    }

    /// A limiter for `list`: slot `paired` (the key's credit cell's, 0 for none) when it
    /// is free or next, so that verify finds both from the key record; else any.
    fn acquire(&mut self, list: LimitList, paired: u32, seq: u64) -> Result<u32, Error> {
        // A freed slot is on the free list: looking there is the check.
        let len = self.slots.len();
        let taken =
            super::credits::take_paired(&mut self.free, len, paired, |_| true).or_else(|| self.free.pop());
        let slot = match taken {
            Some(slot) => slot,
            None => u32::try_from(len).map_err(|_| too_long(seq))?,
        };
        if slot as usize == len {
            self.slots.push(Limiter::new(list));
        } else {
            self.slots[slot as usize] = Limiter::new(list);
        }
        Ok(slot)
    }

    fn release(&mut self, slot: u32) {
        if slot != 0 {
            self.slots[slot as usize] = Limiter::new([NO_LIMIT; MAX_RATE_LIMITS]);
            self.free.push(slot);
        }
    }
}

/// Every list of limits the log named, each once; list 0 is the empty one.
pub(super) struct LimitLists(Interned<LimitList>);

impl LimitLists {
    pub(super) fn new() -> Self {
        LimitLists(Interned::new([NO_LIMIT; MAX_RATE_LIMITS]))
    }

    pub(super) fn intern(&mut self, limits: &[RateLimit], seq: u64) -> Result<u32, Error> {
        self.0.intern(list_of(limits), seq)
    }

    pub(super) fn get(&self, i: u32) -> &[RateLimit] {
        self.0.get(i).map_or(&[], in_list)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// The lists from `from` on, for a snapshot.
    pub(super) fn data(&self, part: std::ops::Range<usize>) -> Vec<Vec<RateLimit>> {
        self.0.part(part).iter().map(|l| in_list(l).to_vec()).collect()
    }
}

impl Projection {
    /// Key `index` now holds the limits of list `list` (0: none): its limiter is made,
    /// replaced (its buckets full again) or freed.
    pub(super) fn set_limits(&mut self, index: u32, list: u32, seq: u64) -> Result<(), Error> {
        let i = index as usize;
        self.cold[i].limits = list;
        let old = std::mem::take(self.limiter_slot(index));
        self.limiters.release(old);
        if list != 0 && self.cold[i].deleted == super::LIVE {
            let limits = list_of(self.limit_lists.get(list));
            let meter = self.keys[i].meter;
            let paired = if meter & super::credits::CREDITED != 0 {
                meter & !super::credits::CREDITED
            } else {
                0
            };
            let slot = self.limiters.acquire(limits, paired, seq)?;
            *self.limiter_slot(index) = slot;
            self.share_key(index);
        }
        Ok(())
    }

    /// A deleted key's limiter goes back to the free slots.
    pub(super) fn drop_limiter(&mut self, index: u32) {
        let old = std::mem::take(self.limiter_slot(index));
        self.limiters.release(old);
    }

    /// Gives back what an admitted request took from the limiter in `slot`: the request
    /// was refused for another reason (its credits).
    #[cold]
    pub(super) fn refund(&self, slot: u32) {
        if let Some(limiter) = self.limiters.slots.get(slot as usize) {
            limiter.refund();
            if let (Some(gate), Some(share)) = (&self.shares.gate, self.shares.limits.get(slot as usize)) {
                let hosts = gate.read().hosts;
                for (limit, cell) in limiter.list.iter().zip(&share.tat) {
                    if limit.limit == 0 {
                        break;
                    }
                    cell.fetch_sub(share_spacing(limit, hosts).0, Ordering::Relaxed);
                }
                let _ = share
                    .unreported
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
        }
    }

    /// One request of a key with limiter `slot` at `now` (steady microseconds). On a host
    /// of a fleet, under this host's share too.
    #[inline]
    pub(super) fn admit(&self, slot: u32, now: u64) -> Result<RateStatus, Rejection> {
        let Some(limiter) = self.limiters.slots.get(slot as usize) else {
            return Err(Rejection::UnknownKey);
        };
        match &self.shares.gate {
            None => limiter.admit(now),
            Some(gate) => match self.shares.limits.get(slot as usize) {
                Some(share) => limiter.admit_shared(share, gate.read(), now),
                None => limiter.admit(now),
            },
        }
    }

    /// Another host's `requests` on the key with limiter `slot`, charged at `now`.
    pub(super) fn charge_limiter(&self, slot: u32, requests: u64, now: u64) {
        if let Some(limiter) = self.limiters.slots.get(slot as usize) {
            limiter.charge(requests, now);
        }
    }

    /// Key `index`'s limits as they stand.
    pub(super) fn limits_of(&self, index: u32) -> &[RateLimit] {
        self.limit_lists.get(self.cold[index as usize].limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(specs: &[&str]) -> Limiter {
        let limits: Vec<RateLimit> = specs.iter().map(|s| s.parse().unwrap()).collect();
        Limiter::new(list_of(&crate::model::limit::canonical_limits(&limits).unwrap()))
    }

    const SECOND: u64 = 1_000_000;

    #[test]
    fn a_limiter_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Limiter>(), 64);
    }

    #[test]
    fn a_quiet_key_bursts_to_its_limit_then_is_spaced() {
        let l = limiter(&["5/10s"]);
        let start = 1_000 * SECOND;
        for left in (0..5).rev() {
            assert_eq!(l.admit(start).unwrap().remaining, left);
        }
        let Err(Rejection::RateLimited { retry_after, limit }) = l.admit(start) else {
            panic!("the sixth in a burst of five passed");
        };
        assert_eq!(limit.to_string(), "5/10s");
        assert_eq!(
            retry_after,
            Duration::from_secs(2),
            "one request per 2 s comes back"
        );
        assert!(l.admit(start + 2 * SECOND - 1).is_err());
        assert!(l.admit(start + 2 * SECOND).is_ok());
        assert!(l.admit(start + 2 * SECOND).is_err());
    }

    /// The bound design.md states: no window of length W ever holds more than 2L − 1,
    /// and the long-run rate is at most L per W; checked by brute force against every
    /// window over a random arrival pattern.
    #[test]
    fn admissions_stay_within_the_stated_bound_in_every_window() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for (spec, limit, window) in [("7/3s", 7u64, 3 * SECOND), ("100/1m", 100, 60 * SECOND)] {
            let l = limiter(&[spec]);
            let mut now = 5 * SECOND;
            let mut admitted = Vec::new();
            for _ in 0..20_000 {
                now += rng.random_range(0..window / limit * 2);
                if l.admit(now).is_ok() {
                    admitted.push(now);
                }
            }
            let mut most = 0;
            for (i, &t) in admitted.iter().enumerate() {
                let in_window = admitted[i..].iter().take_while(|&&u| u < t + window).count();
                most = most.max(in_window as u64);
            }
            assert!(most < 2 * limit, "{spec}: {most} in one window");
            let span = admitted.last().unwrap() - admitted[0];
            assert!(
                admitted.len() as u64 <= limit + span * limit / window + 1,
                "{spec}: long-run rate above the limit"
            );
        }
    }

    #[test]
    fn a_request_refused_by_one_limit_takes_nothing_from_the_others() {
        let l = limiter(&["2/1s", "3/1h"]);
        let now = 10 * SECOND;
        assert!(l.admit(now).is_ok());
        assert!(l.admit(now).is_ok());
        assert!(
            matches!(l.admit(now), Err(Rejection::RateLimited { limit, .. }) if limit.to_string() == "2/1s")
        );
        // The hourly limit counted two, not three: one more passes a second later.
        let status = l.admit(now + 2 * SECOND).unwrap();
        assert_eq!(status.remaining, 0);
        assert_eq!(status.limit.to_string(), "3/1h");
        assert!(
            matches!(l.admit(now + 4 * SECOND), Err(Rejection::RateLimited { limit, .. }) if limit.to_string() == "3/1h")
        );
    }

    #[test]
    fn threads_hammering_one_key_never_pass_more_than_its_burst() {
        let l = std::sync::Arc::new(limiter(&["1000/1h"]));
        let passed = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        if l.admit(SECOND).is_ok() {
                            passed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(passed.into_inner(), 1000);
    }
}
