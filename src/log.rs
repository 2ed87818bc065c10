//! The append-only log as a storage seam: numbered byte entries and a few metadata values.
//!
//! [`Log`] speaks bytes and its own [`LogError`]; no engine type crosses it. An entry is
//! one record (format 1) or one block of records (format 2), keyed by the sequence number
//! of its first record; the log never interprets entries, and never rewrites one that was
//! made durable. sled is one implementation (`log/sled.rs`, the only file that names it);
//! memory is another (tests and temporary stores); a shared log follows the same trait.

pub(crate) mod connection;
pub(crate) mod memory;
#[cfg(feature = "nats")]
pub(crate) mod nats;
pub(crate) mod sled;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why the engine failed. Converted into the crate's [`Error`](crate::model::error::Error) at the seam.
#[derive(Debug)]
pub(crate) enum LogError {
    /// The operating system refused a file operation.
    Io(std::io::Error),
    /// The engine found its own files damaged.
    Corrupt(String),
    /// Anything else the engine reports.
    Engine(String),
    /// A shared log that did not answer (or not in time).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    Unavailable(String),
    /// A setting the engine cannot work with: `what` is the setting, `reason` why.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    Refused { what: &'static str, reason: String },
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Io(e) => write!(f, "I/O error: {e}"),
            LogError::Corrupt(why) => write!(f, "the storage engine's files are damaged: {why}"),
            LogError::Engine(why) | LogError::Unavailable(why) => f.write_str(why),
            LogError::Refused { what, reason } => write!(f, "invalid {what}: {reason}"),
        }
    }
}

impl From<std::io::Error> for LogError {
    fn from(e: std::io::Error) -> Self {
        LogError::Io(e)
    }
}

/// A log entry: its key (the sequence number of its first record) and its bytes.
pub(crate) type Entry = (u64, Vec<u8>);

/// Entries from a key on, in key order.
pub(crate) type Scan<'a> = Box<dyn Iterator<Item = Result<Entry, LogError>> + 'a>;

/// The metadata a log keeps beside its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaKey {
    /// The store's format version (4 bytes, little-endian).
    Format,
    /// How the chain is keyed (see `ChainMarker`).
    Chain,
    /// In a replica of a shared log: the position (8 bytes, little-endian) of the last
    /// stream message whose entries it holds. A hint for where to resume: a restart checks
    /// the message there against the entries before reading on.
    Position,
    /// In a replica of a shared log: when the others last heard this host (a versioned
    /// record the fleet owns): what a restart without the shared log counts from.
    Contact,
    /// In a replica that joined from a snapshot: which history under its first entry it
    /// still fetches from the stream (a versioned record the fleet owns). Absent once the
    /// log holds every record from the first.
    History,
}

/// [`Log::sync_handle`]'s answer: each call makes durable what was written before it.
pub(crate) type SyncHandle = Box<dyn FnMut() -> Result<(), LogError> + Send>;

/// One atomic write: entries and the head that covers them, all or nothing.
pub(crate) struct Batch<'a> {
    /// Entries from this key on are removed first (a failed, never acknowledged batch, or
    /// what follows the head, which `repair` removes).
    pub(crate) discard_from: Option<u64>,
    pub(crate) entries: &'a [Entry],
    /// The encoded head after this batch.
    pub(crate) head: &'a [u8],
}

/// Reading a log; shareable with a thread that verifies while the writer appends.
pub(crate) trait LogRead: Send + Sync {
    /// Entries whose key is at least `from`, in key order.
    fn scan(&self, from: u64) -> Scan<'_>;

    /// The entry with the greatest key at most `key`: the one that holds record `key`.
    fn floor(&self, key: u64) -> Result<Option<Entry>, LogError>;

    /// The encoded head, if one was ever written.
    fn head(&self) -> Result<Option<Vec<u8>>, LogError>;

    /// A metadata value.
    fn meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, LogError>;

    /// The security trail (refused commands), oldest first: kept apart from the entries
    /// and never part of the chain.
    fn refused(&self) -> Result<Vec<Vec<u8>>, LogError>;
}

/// Where records are kept.
pub(crate) trait Log: LogRead {
    /// Applies a batch, all or nothing. It is durable only after [`Log::sync`].
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), LogError>;

    /// Sets a metadata value. It is durable only after [`Log::sync`].
    fn set_meta(&mut self, key: MetaKey, value: &[u8]) -> Result<(), LogError>;

    /// Makes everything written durable.
    fn sync(&mut self) -> Result<(), LogError>;

    /// Makes everything written so far durable, from another thread: what a host of a
    /// fleet calls before it announces a head, so that it never announces what a crash
    /// could take from its log.
    fn sync_handle(&self) -> Result<SyncHandle, LogError>;

    /// Appends to the security trail, then drops its oldest records past `keep`. Durable
    /// with the next [`Log::sync`].
    fn append_refused(&mut self, records: &[Vec<u8>], keep: u64) -> Result<(), LogError>;

    /// A reader that sees what is written from now on, for another thread.
    fn reader(&self) -> Box<dyn LogRead>;

    /// A writer of the history under the log's first entry, for another thread: what a
    /// replica that joined from a snapshot fetches after it opened.
    fn history_writer(&self) -> Result<Box<dyn HistoryWrite>, LogError>;
}

/// Writes entries under a log's first entry (never its head), from another thread.
pub(crate) trait HistoryWrite: Send {
    /// Writes `entries` and sets [`MetaKey::History`] to `state` (`None` removes it), then
    /// makes both durable. Writing the same entries again changes nothing.
    fn write(&mut self, entries: &[Entry], state: Option<&[u8]>) -> Result<(), LogError>;
}

/// Where the hosts of a fleet leave sealed snapshots for a joining host, and find them.
/// Untrusted storage: whatever is fetched is checked against the stream before use.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) trait SnapshotShelf: Send {
    /// The record the newest snapshot holds the state at, as its publisher named it (a
    /// hint: only the snapshot's sealed content counts); `None` if there is none.
    fn newest_seq(&mut self) -> Result<Option<u64>, LogError>;

    /// The newest snapshot's bytes, if there is one of at most `limit` bytes.
    fn newest(&mut self, limit: usize) -> Result<Option<Vec<u8>>, LogError>;

    /// Puts the snapshot file at `path`, holding the state at record `seq`, as the newest.
    fn put(&mut self, seq: u64, path: &std::path::Path) -> Result<(), LogError>;
}

/// Connects to a fleet's snapshot shelf.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) type ShelfConnect = Arc<dyn Fn() -> Result<Box<dyn SnapshotShelf>, LogError> + Send + Sync>;

/// Why an append to a [`SharedLog`] failed.
#[derive(Debug)]
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) enum AppendError {
    /// Another writer appended first: the stream has moved past the position given.
    /// Nothing was appended.
    Conflict,
    /// The message is larger than the stream takes (`limit` bytes). Nothing was appended.
    TooLarge { limit: usize },
    /// The stream did not answer: the message is wholly in it or wholly absent, and
    /// appending the same bytes again is idempotent for a while.
    Uncertain(LogError),
}

/// A message read from a [`SharedLog`]: its position and bytes.
pub(crate) type Delivered = Result<(u64, Vec<u8>), LogError>;

/// What the server says of a shared log's stream: which positions it holds, when it was
/// created, and whether its settings still keep every message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamState {
    /// The position of its first message (its last + 1 when it holds none).
    pub(crate) first: u64,
    /// The position of its last message (0 for a stream never written).
    pub(crate) last: u64,
    /// How many messages it holds: fewer than `last - first + 1` once some were removed.
    pub(crate) messages: u64,
    /// When it was created, nanoseconds since the Unix epoch, by the server's clock.
    pub(crate) created: i64,
    /// Why its settings would let messages go or other subjects in, if they would.
    pub(crate) unsafe_settings: Option<String>,
}

/// Judges the stream's state (`None`: there is no such stream) every period; returns
/// whether to go on.
pub(crate) type Judge = Box<dyn FnMut(Option<StreamState>) -> bool + Send>;

/// A log that several hosts append to: one totally ordered stream of messages numbered
/// from 1. Each host keeps a [`Log`] as a replica of the stream's prefix; the stream is
/// the truth, and the witness every replica is checked against. An append names the
/// position it follows, so two hosts appending at once cannot both win. `log/nats.rs`
/// (NATS JetStream) is the one implementation; it and `log/nats/writes.rs` are the only
/// files that name it.
pub(crate) trait SharedLog: Send {
    /// Appends `message` if the stream's last message is at `after`; returns its position.
    fn append(&mut self, after: u64, message: &[u8]) -> Result<u64, AppendError>;

    /// The position of the stream's last message (0 for an empty stream).
    fn last(&mut self) -> Result<u64, LogError>;

    /// The message at `position`.
    fn get(&mut self, position: u64) -> Result<Vec<u8>, LogError>;

    /// Delivers the messages from `from` on, in order, as they are appended, until the
    /// receiver is dropped; replaces any earlier delivery.
    fn follow(&mut self, from: u64) -> Result<crossbeam_channel::Receiver<Delivered>, LogError>;

    /// The largest message the stream takes, in bytes.
    fn max_message_bytes(&self) -> usize;

    /// The stream's state as the server reports it now; `None` if the stream does not
    /// exist (it was deleted).
    fn inspect(&mut self) -> Result<Option<StreamState>, LogError>;

    /// Calls `judge` with the stream's state every `every` until it returns false. A state
    /// the server did not answer for is not judged.
    fn watch(&mut self, every: std::time::Duration, judge: Judge) -> Result<(), LogError>;

    /// Starts announcing this host's head to the other hosts (at once when it changes,
    /// else every heartbeat) and hearing theirs, until `heads` says the host left.
    fn announce(&mut self, heads: Arc<dyn Heads>) -> Result<(), LogError>;
    /// Starts publishing this host's usage reports on a subject of their own (never the
    /// stream) and handing every message on it to `reports`, until `reports` says the host
    /// left.
    fn share_usage(&mut self, reports: Arc<dyn Reports>) -> Result<(), LogError>;

    /// Sends `request` to host `to`'s writes subject. `undelivered` is called (from
    /// another thread) if the server says at once that nobody takes requests there:
    /// nothing was delivered. The answer, if any, comes through [`Writes::answered`] on
    /// the sender. An engine that carries no requests calls `undelivered` at once.
    fn forward(&mut self, to: &str, request: Vec<u8>, undelivered: Box<dyn FnOnce() + Send>);

    /// Starts handing every request on this host's writes subject, and every answer on its
    /// answers subject, to `writes`, until `writes` says the host left.
    fn serve_writes(&mut self, writes: Arc<dyn Writes>) -> Result<(), LogError>;
}

/// Publishes an answer on the answers subject of the host named.
pub(crate) type AnswerTo = Box<dyn FnOnce(&str, Vec<u8>) + Send>;

/// The leader's side of forwarded writes, as a [`SharedLog`] sees it: where requests on
/// this host's writes subject go. The fleet implements it; the log never reads a
/// request's bytes.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) trait Writes: Send + Sync {
    /// The host whose writes subject this is.
    fn host(&self) -> &str;
    /// A request arrived; `answer` publishes the reply on the answers subject of the host
    /// it names (called at most once, from any thread). Must not block.
    fn request(&self, bytes: &[u8], answer: AnswerTo);
    /// An answer arrived on this host's answers subject (anyone may publish there).
    fn answered(&self, bytes: Vec<u8>);
    /// Whether the host is leaving: requests stop being taken.
    fn is_closing(&self) -> bool;
}

/// A host's side of the usage reports, as a [`SharedLog`] sees it: what to publish next,
/// and where every message on the subject goes. The fleet implements it; the log never
/// reads a report's bytes.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) trait Reports: Send + Sync {
    /// Waits until this host's next round of reports is due and returns its messages;
    /// `None` once the host leaves.
    fn next_reports(&self) -> Option<Vec<Vec<u8>>>;
    /// A message arrived on the usage subject (any publisher's, this host's own too).
    fn received(&self, bytes: &[u8]);
}

/// What became of one announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(any(feature = "nats", test)), allow(dead_code))]
pub(crate) enum Outcome {
    /// The server stored it.
    Acknowledged,
    /// The server answered that the heads bucket does not exist.
    BucketMissing,
    /// No answer, or another error.
    Failed,
}

/// One head to announce: its counter and its sealed bytes.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) struct Announcement {
    pub(crate) counter: u64,
    pub(crate) bytes: Vec<u8>,
}

/// A host's side of the head exchange, as a [`SharedLog`] sees it: what to announce next,
/// and where the answers and the other hosts' heads go. The fleet implements it; the log
/// knows nothing else of the fleet, and never reads a head's bytes.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) trait Heads: Send + Sync {
    /// The name this host's head is stored under.
    fn host(&self) -> &str;

    /// The next announcement: at once when the head changed, else after a heartbeat; once
    /// the host leaves, a last one saying so, then `None`.
    fn next_announcement(&self) -> Option<Announcement>;

    /// What became of announcement `counter`, sent at `sent` (microseconds on
    /// [`crate::clock::monotonic_micros`]). Returns whether the host waits for the
    /// stream's end, read now, to be passed to [`Heads::catch_up_to`].
    fn announced(&self, counter: u64, outcome: Outcome, sent: u64) -> bool;

    /// The stream's end, read after an announcement was answered.
    fn catch_up_to(&self, end: u64);

    /// The server answered this host.
    fn contact(&self);

    /// Reports a fault of the head exchange under `cause`, or clears it.
    fn set_fault(&self, cause: &'static str, reason: String);
    fn clear_fault(&self, cause: &'static str);

    /// The heads bucket was found missing, or made again since the last announcement.
    fn note_bucket_lost(&self);

    /// The watch on the heads (re)started: what was stored meanwhile may have been missed.
    fn watch_started(&self);

    /// An entry of the heads was delivered: `key` holds `value` (`None`: deleted) at
    /// `revision`; `live`: after the history the watch began with.
    fn delivered(&self, key: &str, value: Option<&[u8]>, revision: u64, live: bool);

    /// Whether the host is leaving: the watch ends.
    fn is_closing(&self) -> bool;

    /// Waits, at most `timeout`, until the host verifies keys.
    fn wait_open(&self, timeout: Duration);
}

/// The log's failures as the store reports them: the log speaks its own error, and the
/// error enum above it knows nothing of it.
impl From<LogError> for crate::model::error::Error {
    fn from(e: LogError) -> Self {
        use crate::model::error::Error;
        match e {
            LogError::Io(io) => Error::Io(io),
            LogError::Corrupt(why) => Error::corrupt(0, crate::model::problem::ProblemKind::Undecodable, why),
            LogError::Engine(reason) => Error::Storage { reason },
            LogError::Unavailable(reason) => Error::StreamUnavailable { reason },
            LogError::Refused { what, reason } => Error::invalid(what, reason),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::log::memory::MemLog;
    use crate::log::sled::SledLog;

    /// The behaviour every engine must share.
    pub(crate) fn log_contract(log: &mut dyn Log) {
        assert!(log.head().unwrap().is_none() && log.scan(0).next().is_none());
        assert_eq!(log.meta(MetaKey::Format).unwrap(), None);
        log.set_meta(MetaKey::Format, &[2, 0, 0, 0]).unwrap();
        log.set_meta(MetaKey::Chain, &[0]).unwrap();
        assert_eq!(log.meta(MetaKey::Format).unwrap(), Some(vec![2, 0, 0, 0]));
        let entries = vec![(1, b"one".to_vec()), (2, b"two-three".to_vec())];
        log.write(&Batch {
            discard_from: None,
            entries: &entries,
            head: b"head-3",
        })
        .unwrap();
        log.sync().unwrap();
        let reader = log.reader();
        log.write(&Batch {
            discard_from: None,
            entries: &[(4, b"four".to_vec())],
            head: b"head-4",
        })
        .unwrap();
        let all: Vec<Entry> = reader.scan(0).map(Result::unwrap).collect();
        assert_eq!(all.len(), 3, "a reader sees later writes");
        assert_eq!(reader.head().unwrap(), Some(b"head-4".to_vec()));
        assert_eq!(log.floor(3).unwrap().map(|e| e.0), Some(2));
        assert_eq!(
            log.floor(u64::MAX).unwrap().map(|e| e.0),
            Some(4),
            "never the head"
        );
        assert_eq!(log.floor(0).unwrap(), None);
        assert_eq!(log.scan(3).next().unwrap().unwrap().0, 4);
        log.write(&Batch {
            discard_from: Some(2),
            entries: &[],
            head: b"head-1",
        })
        .unwrap();
        let keys: Vec<u64> = log.scan(0).map(|e| e.unwrap().0).collect();
        assert_eq!(keys, [1]);
        assert_eq!(log.head().unwrap(), Some(b"head-1".to_vec()));

        // The security trail is apart from the entries, and bounded.
        assert!(log.refused().unwrap().is_empty());
        log.append_refused(&[b"r1".to_vec(), b"r2".to_vec()], 3).unwrap();
        log.append_refused(&[b"r3".to_vec(), b"r4".to_vec()], 3).unwrap();
        assert_eq!(
            log.refused().unwrap(),
            [b"r2".to_vec(), b"r3".to_vec(), b"r4".to_vec()]
        );
        assert_eq!(log.reader().refused().unwrap().len(), 3);
        assert_eq!(log.scan(0).count(), 1, "the trail is not in the log");
    }

    #[test]
    fn memory_log_keeps_the_contract() {
        log_contract(&mut MemLog::default());
    }

    #[test]
    fn sled_log_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        log_contract(&mut SledLog::open(&dir.path().join("log"), 1 << 20, true).unwrap());
    }
}
