//! What this host announces is what its local log holds durably: a head is announced only
//! once the entries it covers are synced, so that a host that crashes and starts again
//! from its replica while the shared log is out of reach never holds less than it told the
//! fleet it had (a revocation confirmed on its word would otherwise verify there again).
//! The announcing thread syncs before it seals a head that is newer than the last synced
//! one, off the writer's path.

use super::{Fleet, lock};
use crate::chain::Head;
use crate::log::SyncHandle;

/// A head as announced: its record, the record's chain hash, and its stream position.
pub(super) type Written = (u64, [u8; 32], u64);

/// See the module doc.
#[derive(Default)]
pub(super) struct Durability {
    /// The last head whose entries were written to the local log.
    written: Written,
    /// The last head known to be synced: what announcements carry.
    durable: Written,
    /// Syncs the local log from the announcing thread; `None` for a log that needs none.
    sync: Option<SyncHandle>,
}

impl Fleet {
    /// The local log, synced with `sync` (from the announcing thread), holds `head` at
    /// stream position `position`, durably.
    pub(crate) fn set_sync(&self, sync: SyncHandle, head: Head, position: u64) {
        let mut d = lock(&self.durability);
        d.written = (head.seq, head.hash, position);
        d.durable = d.written;
        d.sync = Some(sync);
    }

    /// The local log now holds `head` at stream position `position` (not yet synced).
    pub(crate) fn written(&self, head: Head, position: u64) {
        {
            let mut d = lock(&self.durability);
            if head.seq >= d.written.0 {
                d.written = (head.seq, head.hash, position);
            }
        }
        lock(&self.own).dirty = true;
        self.announce.notify_all();
    }

    /// The head to announce: what was written is synced first if it is newer than what
    /// was. A sync that fails halts this host (its disk no longer keeps what it applies),
    /// and the last synced head is announced.
    pub(super) fn durable_head(&self) -> Written {
        let mut d = lock(&self.durability);
        if d.written.0 > d.durable.0 {
            let target = d.written;
            let synced = match d.sync.as_mut() {
                Some(sync) => sync(),
                None => Ok(()),
            };
            match synced {
                Ok(()) => d.durable = target,
                Err(e) => {
                    drop(d);
                    self.halt(format!("this host's log could not be synced: {e}"));
                    return lock(&self.durability).durable;
                }
            }
        }
        d.durable
    }
}
