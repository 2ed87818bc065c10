//! The writer's side of a shared log: joining the stream (its genesis, the local log as
//! its prefix, a bootstrap: `replica/join.rs`), appending a batch as one message, and
//! applying what the other hosts append. Messages that are not the fleet's are skipped and counted;
//! a sealed message that does not fit halts this host's writes.

mod forwarding;
pub(crate) mod history;
mod join;
pub(crate) mod snapshot;

pub(crate) use forwarding::{Forwarded, Sent, Unanswered};

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::Fleet;
use super::contact::LastHeard;
use super::message::{self, Identity, Message, Unusable};
use super::stream;
use crate::chain::Head;
use crate::ledger::Ledger;
use crate::log::AppendError;
use crate::log::Delivered;
use crate::log::Entry;
use crate::log::Log;
use crate::log::LogError;
use crate::log::MetaKey;
use crate::log::SharedLog;
use crate::model::error::Error;
use crate::model::problem::ProblemKind;

/// How many messages one application of stream messages takes at most, and how many
/// bytes of entries: bounds the write a catch-up makes between syncs.
const APPLY_MESSAGES: usize = 4096;
const APPLY_BYTES: usize = 8 << 20;
/// The local log is synced when idle, at close, and once this many bytes are unsynced:
/// the stream is the record, and acknowledges a write before this host's disk does.
const SYNC_BYTES: usize = 8 << 20;
/// How far back from a stored position that holds a skipped message a restart looks for the
/// batch to resume from, before it reads the stream from its genesis.
const HINT_LOOKBACK: u64 = 1024;
/// How many times a batch is prepared again after losing the race to append.
pub(crate) const MAX_RACES: usize = 64;

/// The writer's side of a shared log; see the module doc.
pub(crate) struct Replica {
    shared: Box<dyn SharedLog>,
    pub(crate) fleet: Arc<Fleet>,
    /// The stream's identity, from its genesis: every message is sealed for it.
    identity: Identity,
    /// The position of the last message applied.
    position: u64,
    /// Messages as they are appended, from the stream.
    pub(crate) incoming: Receiver<Delivered>,
    /// While a lost race is caught up with: the hash of this host's own message, which may
    /// be in the stream already (an append whose answer was lost, sent again), and where
    /// it was found.
    own: Option<([u8; 32], Option<u64>)>,
    /// Bytes of entries written to the local log since its last sync.
    unsynced: usize,
    /// The delivery has delivered nothing for a whole request timeout: catch-ups read.
    stalled: bool,
    /// Its announcements started: this host is in the fleet until the replica is dropped.
    announcing: bool,
    /// The record of the fleet's last acknowledgement kept in the local log, and when.
    recorded: Option<(LastHeard, Instant)>,
    /// Joined from a snapshot: the history under it still to fetch.
    history: Option<history::History>,
}

/// How appending a batch ended.
pub(crate) enum Appended {
    /// At this position; the entries are to be written locally and accepted.
    At(u64),
    /// Another host appended first; its messages are applied: prepare again.
    Lost,
    /// The message was in the stream already (an append whose answer was lost, sent
    /// again), and is applied with the others: nothing left to write.
    Applied,
    /// The message is too large for the stream.
    TooLarge(usize),
}

impl Replica {
    pub(crate) fn share_usage(&mut self, ledger: Arc<Ledger>) -> Result<(), LogError> {
        self.shared
            .share_usage(super::usage::Sharing::start(Arc::clone(&self.fleet), ledger))
    }

    /// Judges the stream's state every heartbeat, until the fleet closes: a stream
    /// deleted, created again, rolled back behind what this host applied, with messages
    /// removed, or with settings that let messages go makes this host unhealthy and stops
    /// its writes, until the state is right again.
    fn watch(&mut self) -> Result<(), Error> {
        let fleet = Arc::clone(&self.fleet);
        let identity = self.identity;
        // The position applied before the state is read: every message applied by then is
        // in the stream already, whatever this host applies meanwhile.
        let mut applied = fleet.position();
        let judge = move |state: Option<crate::log::StreamState>| {
            if fleet.is_closing() {
                return false;
            }
            fleet
                .stream
                .set_fault(stream::judge(state.as_ref(), &identity, applied));
            applied = fleet.position();
            true
        };
        self.shared.watch(self.fleet.options.heartbeat, Box::new(judge))?;
        Ok(())
    }

    /// If this host joined from a snapshot just now: the history under it to fetch.
    pub(crate) fn history(&self) -> Option<history::History> {
        self.history
    }

    fn set_position(&mut self, log: &mut dyn Log, position: u64) -> Result<(), Error> {
        self.position = position;
        log.set_meta(MetaKey::Position, &position.to_le_bytes())?;
        Ok(())
    }

    /// Applies the stream's messages up to position `to`, from what has been delivered and
    /// by reading the rest.
    pub(crate) fn catch_up(&mut self, log: &mut dyn Log, ledger: &Ledger, to: u64) -> Result<(), Error> {
        if self.position >= to {
            return Ok(());
        }
        // Two stages: this thread collects, decodes and accepts the messages; another writes
        // the accepted entries to the local log, one batch behind.
        let (tx, rx) = crossbeam_channel::bounded::<(Vec<Entry>, (Head, Vec<u8>), u64)>(2);
        let fleet = Arc::clone(&self.fleet);
        let (caught_up, written) = std::thread::scope(|s| {
            let writer = s.spawn(move || -> Result<&mut dyn Log, LogError> {
                for (entries, (head, encoded), position) in rx {
                    write_replica(log, &entries, &encoded, position)?;
                    fleet.written(head, position);
                }
                Ok(log)
            });
            let caught_up = (|| {
                while self.position < to {
                    let batch = self.collect(to)?;
                    let mut checked = self.check(ledger, batch);
                    // Messages that are not the fleet's move the position on, and nothing else.
                    if checked.applied_to > self.position {
                        let head = (checked.head, ledger.encode_head(checked.head)?);
                        let entries = std::mem::take(&mut checked.entries);
                        let bytes = entries.iter().map(|e| e.1.len()).sum::<usize>();
                        if tx.send((entries, head, checked.applied_to)).is_err() {
                            break;
                        }
                        self.unsynced += bytes;
                        self.position = checked.applied_to;
                        self.fleet.applied(checked.head, checked.applied_to);
                    }
                    if let Some(e) = checked.refused {
                        return Err(e);
                    }
                }
                Ok(())
            })();
            drop(tx);
            (caught_up, writer.join())
        });
        let log = match written {
            Ok(Ok(log)) => log,
            Ok(Err(e)) => return Err(self.halting(Error::from(e))),
            Err(_) => return Err(self.halting(Error::Closed)),
        };
        self.sync_if_due(log)?;
        caught_up.map_err(|e| match e {
            Error::StreamUnavailable { .. } | Error::Storage { .. } => e,
            refused => {
                let pos = self.position + 1;
                self.halting(Error::FleetHalted {
                    reason: format!("stream message {pos} was refused: {refused}"),
                })
            }
        })
    }

    /// The next messages to apply, up to position `to`: delivered ones (the fast path); a
    /// message is read only where the delivery has a gap, or has delivered nothing for a
    /// whole request timeout.
    fn collect(&mut self, to: u64) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let wait = self.fleet.options.request_timeout;
        let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        loop {
            let want = self.position + batch.len() as u64 + 1;
            if want > to || batch.len() >= APPLY_MESSAGES || bytes >= APPLY_BYTES {
                break;
            }
            let patience = if batch.is_empty() { wait } else { Duration::ZERO };
            match self.incoming.recv_timeout(patience) {
                Ok(Ok((pos, _))) if pos < want => self.stalled = false,
                Ok(Ok((pos, msg))) => {
                    self.stalled = false;
                    // A gap is read, a bounded part of it at a time (the rest is read
                    // by the next round).
                    let pos_or_bound = pos.min(want + APPLY_MESSAGES as u64);
                    if pos_or_bound < pos {
                        for gap in want..pos_or_bound {
                            batch.push((gap, self.shared.get(gap)?));
                        }
                        break;
                    }
                    for gap in want..pos {
                        let missing = self.shared.get(gap)?;
                        bytes += missing.len();
                        batch.push((gap, missing));
                    }
                    bytes += msg.len();
                    batch.push((pos, msg));
                }
                Ok(Err(_)) | Err(_) if batch.is_empty() || (self.stalled && to != u64::MAX) => {
                    // Nothing delivered for a whole timeout: read, and keep reading (up to
                    // the end asked for) until deliveries resume.
                    self.stalled = true;
                    let msg = self.shared.get(want)?;
                    bytes += msg.len();
                    batch.push((want, msg));
                }
                // Nothing more delivered yet: apply what there is.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        self.fleet.contact();
        Ok(batch)
    }

    /// Applies what has been delivered without waiting; reads a gap in the delivery.
    pub(crate) fn apply_delivered(
        &mut self,
        log: &mut dyn Log,
        ledger: &Ledger,
        first: Delivered,
    ) -> Result<(), Error> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            let (pos, msg) = item?;
            self.fleet.contact();
            let want = self.position + batch.len() as u64 + 1;
            if pos >= want {
                // A gap is read, a bounded part of it at a time (the idle poll reads on).
                let bound = want + APPLY_MESSAGES as u64;
                for gap in want..pos.min(bound) {
                    let msg = self.shared.get(gap)?;
                    bytes += msg.len();
                    batch.push((gap, msg));
                }
                if pos >= bound {
                    break;
                }
                bytes += msg.len();
                batch.push((pos, msg));
            }
            if batch.len() < APPLY_MESSAGES && bytes < APPLY_BYTES {
                next = self.incoming.try_recv().ok();
            }
        }
        self.apply(log, ledger, batch)
    }

    /// Reads the stream's end and catches up with it (the follower may have stalled).
    /// After a lost race: applies at least the next message (the winner's, delivered
    /// within a moment, or read), and whatever else has been delivered by then.
    fn apply_next(&mut self, log: &mut dyn Log, ledger: &Ledger) -> Result<(), Error> {
        let at_least = self.position + 1;
        while self.position < at_least {
            let batch = self.collect(u64::MAX)?;
            self.apply(log, ledger, batch)?;
        }
        Ok(())
    }

    pub(crate) fn poll(&mut self, log: &mut dyn Log, ledger: &Ledger) -> Result<(), Error> {
        let last = self.shared.last()?;
        self.fleet.contact();
        self.catch_up(log, ledger, last)
    }

    /// Decodes, checks and accepts consecutive messages, then writes their entries to the
    /// local log. A message that does not follow the head, or whose records the ledger
    /// refuses, halts this host's writes.
    fn apply(&mut self, log: &mut dyn Log, ledger: &Ledger, batch: Vec<(u64, Vec<u8>)>) -> Result<(), Error> {
        let checked = self.check(ledger, batch);
        if checked.applied_to > self.position {
            let head = ledger.encode_head(checked.head)?;
            write_replica(log, &checked.entries, &head, checked.applied_to)
                .map_err(|e| self.halting(Error::from(e)))?;
        }
        self.settle_checked(log, checked)
    }

    /// Decodes consecutive messages and has the ledger accept their records, stopping at
    /// the first that does not fit. Changes the state, not the local log.
    fn check(&mut self, ledger: &Ledger, batch: Vec<(u64, Vec<u8>)>) -> Checked {
        let mut checked = Checked {
            entries: Vec::new(),
            head: ledger.head(),
            applied_to: self.position,
            refused: None,
        };
        for (pos, bytes) in batch {
            if let Some((own, found)) = self.own.as_mut()
                && found.is_none()
                && blake3::hash(&bytes).as_bytes() == own
            {
                *found = Some(pos);
            }
            let m = match message::decode(&bytes, pos, Some(&self.identity.stream_id), ledger.chain()) {
                Ok(Message::Entries(m)) => m,
                // Not the fleet's: every host skips it the same way, so their logs stay
                // the same; it is counted and reported.
                Err(Unusable::Foreign(why)) => {
                    self.fleet.stream.foreign(why);
                    checked.applied_to = pos;
                    continue;
                }
                Err(Unusable::Legacy) => {
                    self.fleet.stream.foreign(format!(
                        "stream message {pos} is not the fleet's: a version 1 message (keyledger 0.4.0), \
                         bound to no stream, replayed here"
                    ));
                    checked.applied_to = pos;
                    continue;
                }
                Ok(Message::Genesis { .. }) => {
                    checked.refused = Some(Error::corrupt(
                        0,
                        ProblemKind::Inserted,
                        format!("stream message {pos} is a second genesis of this stream"),
                    ));
                    break;
                }
                Err(Unusable::Broken(e)) => {
                    checked.refused = Some(e);
                    break;
                }
            };
            let head = ledger.head();
            let accepted = if m.first == head.seq + 1 {
                self.fleet.bootstrapped_through(m.bootstrap);
                ledger.accept(&m.entries).map(|()| m.entries)
            } else {
                Err(Error::corrupt(
                    head.seq + 1,
                    ProblemKind::Inserted,
                    format!(
                        "stream message {pos} holds records {}..={} but this host's log ends at record {}: \
                         the stream and this host's log disagree",
                        m.first, m.last, head.seq
                    ),
                ))
            };
            match accepted {
                Ok(mut e) => {
                    checked.entries.append(&mut e);
                    checked.applied_to = pos;
                    checked.head = ledger.head();
                }
                Err(e) => {
                    checked.refused = Some(e);
                    break;
                }
            }
        }
        checked
    }

    /// After the checked entries were written: the position, the sync, the announcement;
    /// and the halt, if a message was refused.
    fn settle_checked(&mut self, log: &mut dyn Log, checked: Checked) -> Result<(), Error> {
        if checked.applied_to > self.position {
            self.position = checked.applied_to;
            self.unsynced += checked.entries.iter().map(|e| e.1.len()).sum::<usize>();
            self.fleet.written(checked.head, checked.applied_to);
            self.sync_if_due(log)?;
            self.fleet.applied(checked.head, checked.applied_to);
        }
        match checked.refused {
            None => Ok(()),
            Some(e) => {
                let pos = checked.applied_to + 1;
                Err(self.halting(Error::FleetHalted {
                    reason: format!("stream message {pos} was refused: {e}"),
                }))
            }
        }
    }

    /// Halts this host's writes for `e`; returns it.
    fn halting(&self, e: Error) -> Error {
        let reason = match &e {
            Error::FleetHalted { reason } => reason.clone(),
            other => format!("this host's log could not take the stream's records: {other}"),
        };
        self.fleet.halt(reason.clone());
        Error::FleetHalted { reason }
    }

    /// Appends a batch's entries as one message after the last position applied. On a lost
    /// race, applies the winner's messages.
    pub(crate) fn append(
        &mut self,
        log: &mut dyn Log,
        ledger: &Ledger,
        entries: &[Entry],
    ) -> Result<Appended, Error> {
        // A stream that is not the one this fleet wrote (or may drop messages) takes no
        // write: it could be lost, or land in a history that is not the fleet's.
        if let Some(reason) = self.fleet.stream.fault() {
            return Err(Error::StreamChanged { reason });
        }
        let message = message::encode_entries(
            self.fleet.host(),
            self.identity.stream_id,
            self.position + 1,
            0,
            entries,
            ledger.chain(),
        )?;
        // An append the stream did not answer is sent once more, the same bytes: if the
        // first one landed, the stream's deduplication answers with its position.
        let mut appended = self.shared.append(self.position, &message);
        if matches!(appended, Err(AppendError::Uncertain(_))) {
            appended = self.shared.append(self.position, &message);
        }
        match appended {
            Ok(at) => {
                self.fleet.contact();
                Ok(Appended::At(at))
            }
            Err(AppendError::Conflict) => {
                // The stream checks the position before it deduplicates: a resent message
                // that landed the first time is a conflict, and is found among the
                // messages the catch-up applies.
                self.fleet.contact();
                self.own = Some((*blake3::hash(&message).as_bytes(), None));
                let caught_up = self.apply_next(log, ledger);
                let found = self.own.take().and_then(|(_, found)| found);
                // Found and applied, even if a later message halted this host: the write
                // is in the shared log and in this host's state.
                if found.is_some_and(|at| at <= self.position) {
                    return Ok(Appended::Applied);
                }
                caught_up?;
                Ok(Appended::Lost)
            }
            Err(AppendError::TooLarge { limit }) => Ok(Appended::TooLarge(limit)),
            Err(AppendError::Uncertain(e)) => Err(Error::StreamUnavailable {
                reason: format!("{e}; the write is wholly in the stream or wholly absent"),
            }),
        }
    }

    /// This host's own message, appended at `position`, was written to the local log
    /// (`bytes` of entries): records the position, and syncs if enough is unsynced.
    pub(crate) fn written(&mut self, log: &mut dyn Log, position: u64, bytes: usize) -> Result<(), Error> {
        self.set_position(log, position)?;
        self.unsynced += bytes;
        self.sync_if_due(log)
    }

    fn sync_if_due(&mut self, log: &mut dyn Log) -> Result<(), Error> {
        if self.unsynced >= SYNC_BYTES {
            self.settle(log)?;
        }
        Ok(())
    }

    /// Keeps the fleet's last acknowledgement of this host in the local log (`meta/contact`,
    /// synced), if it changed and the last one kept is `every` old: a restart without the
    /// shared log counts from it (`fleet/contact.rs`). What is kept is never later than the
    /// truth, so keeping it seldom only makes such a restart count itself staler.
    pub(crate) fn keep_contact(&mut self, log: &mut dyn Log, every: Duration) -> Result<(), Error> {
        let Some(latest) = self.fleet.last_heard() else {
            return Ok(());
        };
        if self
            .recorded
            .is_some_and(|(kept, at)| kept == latest || at.elapsed() < every)
        {
            return Ok(());
        }
        log.set_meta(MetaKey::Contact, &latest.encode())
            .map_err(|e| self.halting(Error::from(e)))?;
        self.unsynced += 1;
        self.settle(log)?;
        self.recorded = Some((latest, Instant::now()));
        Ok(())
    }

    /// Syncs the local log if anything was written since the last sync. The stream holds
    /// everything already: a crash before this only costs the restart a longer catch-up.
    pub(crate) fn settle(&mut self, log: &mut dyn Log) -> Result<(), Error> {
        if self.unsynced > 0 {
            log.sync().map_err(|e| self.halting(Error::from(e)))?;
            self.unsynced = 0;
        }
        Ok(())
    }
}

/// Messages the ledger accepted: their entries, the head and position they reach, and why
/// the next one was refused, if one was.
struct Checked {
    entries: Vec<Entry>,
    head: Head,
    applied_to: u64,
    refused: Option<Error>,
}

/// Writes accepted entries to the local log, with their sealed head and stream position.
fn write_replica(log: &mut dyn Log, entries: &[Entry], head: &[u8], position: u64) -> Result<(), LogError> {
    log.write(&crate::log::Batch {
        discard_from: None,
        entries,
        head,
    })?;
    log.set_meta(MetaKey::Position, &position.to_le_bytes())
}

impl Drop for Replica {
    /// The writer is gone: this host leaves the fleet (its announcements stop, which the
    /// shared log's threads wait for before they end).
    fn drop(&mut self) {
        // A join that failed before it announced leaves the fleet as it was: a host started
        // without the shared log tries again.
        if self.announcing {
            self.fleet.close();
        }
    }
}
