//! A host started while the shared log was out of reach: it counts its staleness and its
//! fence from its replica's record of the last time the fleet heard it (as if it had kept
//! running), reports itself `stale` and takes no write until it has joined; and that
//! record, taken at each acknowledged announcement.

use std::time::{Duration, Instant};

use super::{Contact, Fleet, lock};
use crate::fleet::contact::LastHeard;

/// Why a host started without the shared log has not joined yet, and the limit its fence
/// closes at meanwhile.
#[derive(Clone)]
pub(crate) struct Detached {
    /// What the last attempt to reach the shared log said.
    why: String,
    limit: Duration,
}

impl Detached {
    /// The `stale` cause's sentence, `stale` after the fleet last heard this host.
    pub(super) fn reason(&self, stale: Duration) -> String {
        format!(
            "started from its replica while the shared log was out of reach ({}); not joined yet: it \
             takes no writes, and the fleet last heard it {:.1} s ago",
            self.why,
            stale.as_secs_f64()
        )
    }

    /// The `fenced` cause's sentence.
    pub(super) fn fenced(&self, stale: Duration) -> String {
        format!(
            "the fleet last heard it {:.1} s ago, past its limit of {:.1} s: it rejects every key until it \
             has joined and caught up",
            stale.as_secs_f64(),
            self.limit.as_secs_f64()
        )
    }
}

impl Fleet {
    /// This host starts without the shared log (`why`), from a replica whose record says
    /// the fleet last heard it `last`, `elapsed` ago: its staleness counts from then, and
    /// its fence is open until the shorter of the limit it announced then and its own
    /// has passed since (shut already if it has).
    pub(crate) fn start_detached(&self, why: String, last: &LastHeard, elapsed: Duration) {
        let limit = self.options.fence_limit().min(last.limit());
        // The fence counts against its own limit: a longer one than was announced then
        // is shortened by starting it further back.
        let unheard = elapsed.saturating_add(self.options.fence_limit().saturating_sub(limit));
        *lock(&self.contact) = Contact {
            at: Instant::now(),
            before: elapsed,
        };
        *lock(&self.detached) = Some(Detached {
            why: why.clone(),
            limit,
        });
        let verifies = self.fence.resume(unheard);
        let host = self.options.host.as_str();
        tracing::warn!(
            target: "keyledger::fleet",
            host,
            "the shared log is out of reach ({why}): started from this host's replica, which the fleet \
             last heard {:.1} s ago; {}; it takes no writes until it has joined",
            elapsed.as_secs_f64(),
            if verifies {
                format!("it verifies keys until {:.1} s after that", limit.as_secs_f64())
            } else {
                "that is past its limit: it rejects every key until it has joined and caught up".to_owned()
            }
        );
        self.log_changes();
    }

    /// Why this host has not joined, while it has not.
    pub(crate) fn detached(&self) -> Option<String> {
        lock(&self.detached).as_ref().map(|d| d.why.clone())
    }

    /// Another attempt to reach the shared log failed: `why`.
    pub(crate) fn still_detached(&self, why: String) {
        if let Some(d) = lock(&self.detached).as_mut() {
            d.why = why;
        }
    }

    /// This host joined the fleet: it counts as any other from now on.
    pub(crate) fn attached(&self) {
        *lock(&self.detached) = None;
        self.log_changes();
    }

    /// The server acknowledged an announcement sent at `sent` (the fence's clock).
    pub(super) fn heard(&self, sent: u64) {
        self.fence.heard(sent);
        let sharing = lock(&self.usage).as_ref().map_or(1, |u| u.hosts);
        let hosts = sharing.max(1 + self.live_peers().len());
        *lock(&self.last_heard) = Some(LastHeard::sent_at(sent, self.options.fence_limit(), hosts));
    }

    /// The last acknowledgement of this host's announcements, for its replica to keep.
    pub(crate) fn last_heard(&self) -> Option<LastHeard> {
        *lock(&self.last_heard)
    }
}
