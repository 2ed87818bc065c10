//! What this host announces is what its local log holds durably: a head is announced only
//! once the entries it covers are synced, so that a host that crashes and starts again
//! from its replica while the shared log is out of reach never holds less than it told the
//! fleet it had (a revocation confirmed on its word would otherwise verify there again).
//! The announcing thread syncs before it seals a head newer than the last synced one, off
//! the writer's path: the writer only marks what it wrote.

use std::sync::Mutex;

use super::{Fleet, lock};
use crate::chain::Head;
use crate::log::SyncHandle;

/// A head as announced: its record, the record's chain hash, and its stream position.
pub(super) type Written = (u64, [u8; 32], u64);

/// See the module doc.
#[derive(Default)]
pub(super) struct Durability {
    /// The last head whose entries were written to the local log, and the last one known
    /// to be synced (what announcements carry).
    marks: Mutex<(Written, Written)>,
    /// Syncs the local log from the announcing thread; `None` before the host joined.
    sync: Mutex<Option<SyncHandle>>,
}

impl Fleet {
    /// The local log, synced with `sync` (from the announcing thread), holds `head` at
    /// stream position `position`, durably.
    pub(crate) fn set_sync(&self, sync: SyncHandle, head: Head, position: u64) {
        *lock(&self.durability.sync) = Some(sync);
        let mark = (head.seq, head.hash, position);
        *lock(&self.durability.marks) = (mark, mark);
    }

    /// The local log now holds `head` at stream position `position` (not yet synced).
    pub(crate) fn written(&self, head: Head, position: u64) {
        {
            let mut marks = lock(&self.durability.marks);
            if head.seq >= marks.0.0 {
                marks.0 = (head.seq, head.hash, position);
            }
        }
        lock(&self.own).dirty = true;
        self.announce.notify_all();
    }

    /// The head to announce: what was written, synced first if it is newer than what was
    /// synced. A sync that fails halts this host (its disk no longer keeps what it
    /// applies), and the last synced head is announced.
    pub(super) fn durable_head(&self) -> Written {
        let (written, durable) = *lock(&self.durability.marks);
        if written.0 <= durable.0 {
            return durable;
        }
        let synced = match lock(&self.durability.sync).as_mut() {
            Some(sync) => sync(),
            None => Ok(()),
        };
        if let Err(e) = synced {
            self.halt(format!("this host's log could not be synced: {e}"));
            return lock(&self.durability.marks).1;
        }
        let mut marks = lock(&self.durability.marks);
        if written.0 > marks.1.0 {
            marks.1 = written;
        }
        marks.1
    }
}
