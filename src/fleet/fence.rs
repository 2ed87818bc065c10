//! The gate every verify of a fleet host passes: it rejects every key while this host
//! cannot be sure it holds the fleet's latest revocations.
//!
//! It closes by itself, with no thread to wake: each verify compares the coarse monotonic
//! clock with the send time of the last announcement the server acknowledged, so a host
//! whose threads are starved or paused still fences on time. It reads two atomics and the
//! clock; it never locks or allocates.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub(crate) use crate::clock::CLOCK_TICK;
pub(crate) use crate::clock::monotonic_micros as now;
pub(crate) use crate::clock::suspended;

/// See the module doc. A single host's fence never closes.
#[derive(Debug)]
pub(crate) struct Fence {
    /// Microseconds after `heard` past which every key is rejected; `u64::MAX` never.
    limit: u64,
    /// [`now`] when the last announcement the server acknowledged was sent (or the
    /// server answered that the heads bucket does not exist; see `Fleet::announced`).
    heard: AtomicU64,
    /// Closed until this host has applied the stream up to an end read after contact came
    /// back, and for good once it leaves.
    shut: AtomicBool,
}

impl Fence {
    /// A fence that never closes: a single host.
    pub(crate) fn open() -> Self {
        Fence {
            limit: u64::MAX,
            heard: AtomicU64::new(0),
            shut: AtomicBool::new(false),
        }
    }

    /// A fleet host's fence, closing `limit` after the last acknowledged announcement;
    /// shut until the first one (a host serves only once the others can see it).
    pub(crate) fn closing_after(limit: std::time::Duration) -> Self {
        Fence {
            limit: u64::try_from(limit.as_micros()).unwrap_or(u64::MAX),
            heard: AtomicU64::new(0),
            shut: AtomicBool::new(true),
        }
    }

    /// Whether every key is to be rejected now.
    #[inline]
    pub(crate) fn rejects(&self) -> bool {
        if self.limit == u64::MAX {
            return false;
        }
        // `heard` first: a writer that shuts the gate before it moves `heard` forward is
        // then seen shut.
        let heard = self.heard.load(Ordering::Acquire);
        self.shut.load(Ordering::Acquire) || now().saturating_sub(heard) > self.limit
    }

    /// Whether the limit passed since the last acknowledged announcement.
    pub(crate) fn lapsed(&self) -> bool {
        now().saturating_sub(self.heard.load(Ordering::Acquire)) > self.limit
    }

    /// The server acknowledged an announcement sent at `sent` ([`now`]'s reading). If the
    /// fence had lapsed (or was shut), it stays shut: the caller catches up and opens it.
    /// Returns whether it is shut.
    pub(crate) fn heard(&self, sent: u64) -> bool {
        let shut = self.shut.load(Ordering::Acquire) || self.lapsed();
        if shut {
            self.shut.store(true, Ordering::Release);
        }
        self.heard.fetch_max(sent, Ordering::AcqRel);
        shut
    }

    /// For a host started without the server: opens the fence as if the last acknowledged
    /// announcement had been sent `unheard` ago, so that it closes when it would have had
    /// the host kept running. Stays shut if that is past the limit (or further back than
    /// the clock reaches). Returns whether it opened.
    pub(crate) fn resume(&self, unheard: std::time::Duration) -> bool {
        let unheard = u64::try_from(unheard.as_micros()).unwrap_or(u64::MAX);
        let now = now();
        if unheard >= self.limit || unheard > now {
            return false;
        }
        self.heard.fetch_max(now - unheard, Ordering::AcqRel);
        self.shut.store(false, Ordering::Release);
        true
    }

    /// Opens the fence: this host holds everything the stream held when contact came back.
    pub(crate) fn reopen(&self) {
        self.shut.store(false, Ordering::Release);
    }

    /// Shuts the fence until it is opened again.
    pub(crate) fn shut(&self) {
        self.shut.store(true, Ordering::Release);
    }

    pub(crate) fn is_shut(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }

    /// How long since the last acknowledged announcement was sent.
    pub(crate) fn unheard_for(&self) -> std::time::Duration {
        std::time::Duration::from_micros(now().saturating_sub(self.heard.load(Ordering::Acquire)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_fence_closes_at_its_limit_and_reopens_only_when_told() {
        assert!(!Fence::open().rejects());
        let f = Fence::closing_after(Duration::from_millis(200));
        assert!(f.rejects(), "shut until the first acknowledged announcement");
        assert!(f.heard(now()), "still shut: nothing caught up yet");
        f.reopen();
        assert!(!f.rejects());
        std::thread::sleep(Duration::from_millis(200) + CLOCK_TICK * 2);
        assert!(f.rejects(), "lapsed");
        // A late answer to an old announcement does not open it.
        assert!(f.heard(now() - 300_000));
        assert!(f.rejects());
        // A fresh one does not either, until caught up.
        assert!(f.heard(now()));
        assert!(f.rejects());
        f.reopen();
        assert!(!f.rejects());
    }

    /// Resumed from a record of the last acknowledged announcement, a fence closes at the
    /// same limit counted from it, and one past the limit stays shut.
    #[test]
    fn a_resumed_fence_closes_at_its_limit_from_the_last_announcement_heard() {
        let f = Fence::closing_after(Duration::from_millis(300));
        assert!(f.resume(Duration::from_millis(150)));
        assert!(!f.rejects());
        assert!(f.unheard_for() >= Duration::from_millis(150));
        std::thread::sleep(Duration::from_millis(150) + CLOCK_TICK * 2);
        assert!(f.rejects(), "lapsed at the limit, counted from before the start");
        let late = Fence::closing_after(Duration::from_millis(300));
        assert!(!late.resume(Duration::from_millis(300)));
        assert!(late.rejects());
        assert!(!late.resume(Duration::MAX));
    }
}
