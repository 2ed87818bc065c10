//! A fleet host's side of rate limits and credits held fleet-wide: what this host admitted
//! since its last report (an atomic counter per limited or credited key, bumped on the
//! verify path), its share of what is left (one more GCRA cell per limit, and an allowance
//! of credits), and the others' reports charged to the key's own cells.
//!
//! Only a host of a fleet has these: a single host's projection has no [`ShareGate`] and
//! its verify path is untouched. The fleet (`fleet/usage.rs`) decides when a share is
//! granted again and how many hosts share; this module never talks to anyone. See
//! `docs/design.md`, "Rate limits and credits across the fleet".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Projection;
use super::credits::CREDITED;
use crate::model::id::KeyId;

/// Bits of the gate's word: the number of hosts sharing, whether shares may be granted
/// again now, and the report round (tick) they are granted for.
const HOSTS_BITS: u32 = 16;
const OPEN: u64 = 1 << HOSTS_BITS;
const EPOCH_SHIFT: u32 = HOSTS_BITS + 1;

/// What the fleet tells the verify path, in one word: how many hosts share the keys'
/// limits and credits, and the round whose reports every host has applied (each key's
/// share is granted again once per round, by the first request that sees it).
pub(crate) struct ShareGate {
    word: AtomicU64,
    /// When a host out of its share of credits may come back: the next round.
    interval: Duration,
}

/// The gate as one request reads it.
#[derive(Clone, Copy)]
pub(super) struct Gate {
    pub(super) hosts: u64,
    pub(super) epoch: u64,
    /// Shares may be granted from the cells as they stand (every host's reports of round
    /// `epoch` applied, this host's next report not yet sent).
    pub(super) open: bool,
}

impl ShareGate {
    /// A gate for `hosts` hosts, reporting every `interval`; no round complete yet.
    pub(crate) fn new(hosts: usize, interval: Duration) -> Self {
        let gate = ShareGate {
            word: AtomicU64::new(0),
            interval,
        };
        gate.set(0, false, hosts);
        gate
    }

    /// Round `epoch` is complete on this host (`open`), or not yet (a share granted now
    /// may only be lowered); `hosts` hosts share.
    pub(crate) fn set(&self, epoch: u64, open: bool, hosts: usize) {
        let hosts = u64::try_from(hosts.clamp(1, (1 << HOSTS_BITS) - 1)).unwrap_or(1);
        let word = (epoch << EPOCH_SHIFT) | if open { OPEN } else { 0 } | hosts;
        self.word.store(word, Ordering::Release);
    }

    #[inline]
    pub(super) fn read(&self) -> Gate {
        let word = self.word.load(Ordering::Acquire);
        Gate {
            hosts: (word & (OPEN - 1)).max(1),
            epoch: word >> EPOCH_SHIFT,
            open: word & OPEN != 0,
        }
    }

    pub(super) fn interval(&self) -> Duration {
        self.interval
    }
}

/// A limited key's share on this host: one GCRA cell per limit spacing requests `N·T`
/// apart (its share of the rate), the requests admitted since the last report, and the
/// round its share was last granted for. One cache line, apart from the limiter's.
#[repr(align(64))]
#[derive(Default)]
pub(super) struct ShareCell {
    pub(super) tat: [AtomicU64; crate::model::limit::MAX_RATE_LIMITS],
    pub(super) unreported: AtomicU64,
    pub(super) epoch: AtomicU64,
    /// The key's index, to name it in a report.
    key: u32,
}

/// A credited key's share on this host: what it may still spend until its share is
/// granted again, the cost spent since the last report, and the round of its grant.
#[repr(align(64))]
#[derive(Default)]
pub(super) struct CreditShare {
    pub(super) allowance: AtomicU64,
    pub(super) unreported: AtomicU64,
    pub(super) epoch: AtomicU64,
    key: u32,
}

/// The shares of every limiter and credit cell, by slot; empty for a single host.
#[derive(Default)]
pub(super) struct Shares {
    pub(super) gate: Option<Arc<ShareGate>>,
    pub(super) limits: Vec<ShareCell>,
    pub(super) credits: Vec<CreditShare>,
}

/// One key's line in a report: what one host admitted since its last report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) key: KeyId,
    /// Requests admitted under its rate limits.
    pub(crate) requests: u64,
    /// Credits spent.
    pub(crate) cost: u64,
}

fn slot_mut<T: Default>(cells: &mut Vec<T>, slot: usize) -> &mut T {
    if cells.len() <= slot {
        cells.resize_with(slot + 1, T::default);
    }
    &mut cells[slot]
}

impl Projection {
    /// Makes this projection a fleet host's: every limited and credited key gets a share,
    /// full (its limit's burst, or its credits, over the hosts), and counts what it admits.
    pub(crate) fn share_with(&mut self, gate: Arc<ShareGate>) {
        self.shares.gate = Some(gate);
        for index in 0..self.keys.len() {
            self.share_key(u32::try_from(index).unwrap_or(u32::MAX));
        }
    }

    /// Key `index`'s shares start again (its limits or credits were set or it was made).
    pub(super) fn share_key(&mut self, index: u32) {
        let Some(gate) = self.shares.gate.as_ref().map(|g| g.read()) else {
            return;
        };
        let Some(meter) = self.keys.get(index as usize).map(|k| k.meter) else {
            return;
        };
        let (limiter, credit) = if meter & CREDITED != 0 {
            let slot = meter & !CREDITED;
            let limiter = self.credits.get(slot).map_or(0, |c| c.limiter);
            (limiter, Some(slot))
        } else {
            (meter, None)
        };
        if limiter != 0 {
            *slot_mut(&mut self.shares.limits, limiter as usize) = ShareCell {
                key: index,
                ..ShareCell::default()
            };
        }
        if let Some(slot) = credit {
            let left = self.credits.get(slot).map_or(0, |c| c.left());
            *slot_mut(&mut self.shares.credits, slot as usize) = CreditShare {
                allowance: AtomicU64::new(left / gate.hosts),
                key: index,
                ..CreditShare::default()
            };
        }
    }

    /// What this host admitted since the last call, per key (only keys with traffic),
    /// and the counts set back to zero.
    pub(crate) fn take_usage(&self) -> Vec<Usage> {
        let mut by_key: std::collections::BTreeMap<u32, (u64, u64)> = std::collections::BTreeMap::new();
        for cell in &self.shares.limits {
            let n = cell.unreported.swap(0, Ordering::AcqRel);
            if n > 0 {
                by_key.entry(cell.key).or_default().0 += n;
            }
        }
        for cell in &self.shares.credits {
            let n = cell.unreported.swap(0, Ordering::AcqRel);
            if n > 0 {
                let entry = by_key.entry(cell.key).or_default();
                entry.1 = entry.1.saturating_add(n);
            }
        }
        by_key
            .into_iter()
            .filter_map(|(index, (requests, cost))| {
                Some(Usage {
                    key: self.keys.get(index as usize)?.id,
                    requests,
                    cost,
                })
            })
            .collect()
    }

    /// Charges what other hosts admitted to this host's cells, at `now` (steady
    /// microseconds): each limit's time moves on by `requests · T` and `cost` comes off the
    /// credits (down to zero). Never refunds; unknown keys are skipped.
    pub(crate) fn charge_usage(&self, usage: &[Usage], now: u64) {
        for u in usage {
            let Some(meter) = self
                .key_index(u.key)
                .and_then(|i| self.keys.get(i as usize))
                .map(|k| k.meter)
            else {
                continue;
            };
            let limiter = if meter & CREDITED != 0 {
                let cell = self.credits.get(meter & !CREDITED);
                if let Some(cell) = cell {
                    cell.charge(u.cost);
                }
                cell.map_or(0, |c| c.limiter)
            } else {
                meter
            };
            if limiter != 0 && u.requests > 0 {
                self.charge_limiter(limiter, u.requests, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<ShareCell>(), 64);
        assert_eq!(std::mem::size_of::<CreditShare>(), 64);
    }

    #[test]
    fn the_gate_word_round_trips() {
        let gate = ShareGate::new(3, Duration::from_millis(200));
        let g = gate.read();
        assert_eq!((g.hosts, g.epoch, g.open), (3, 0, false));
        gate.set(8_900_000_000, true, 5);
        let g = gate.read();
        assert_eq!((g.hosts, g.epoch, g.open), (5, 8_900_000_000, true));
        gate.set(7, false, 0);
        assert_eq!(gate.read().hosts, 1, "never fewer than this host");
    }
}
