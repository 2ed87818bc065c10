//! The writer thread: the one place commands become durable. It gathers requests into
//! batches, partitions each so that every command is prepared against a state holding
//! everything before it, makes the batch durable with one sync (group commit) or, on a
//! host of a fleet, appends it to the shared log first, then has the ledger accept it and
//! answers. It never decides what a command may do: the ledger prepares and accepts.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rand::rngs::StdRng;

use crate::codec;
use crate::fleet::offline::Rejoin;
use crate::fleet::replica::Appended;
use crate::fleet::replica::Replica;
use crate::ledger::Command;
use crate::ledger::Ledger;
use crate::log::Batch;
use crate::log::Log;
use crate::log::MetaKey;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::persist::backup;
use crate::persist::snapshot;
use crate::persist::trail;

use super::background::{IntegrityCell, Snapshots};
use super::stats::Stats;

/// How often the writer wakes when idle: the system clock's minute for last-used stamps
/// is at most this stale.
const TICK: Duration = Duration::from_secs(1);

/// How often a host of a fleet keeps the fleet's last acknowledgement of it in its local
/// log, at most (a sync each time).
const KEEP_CONTACT_EVERY: Duration = Duration::from_secs(1);

/// A batch whose write and sync (or append to the shared log) takes longer than this is
/// logged as a stall: callers were kept waiting, and `/auth` was not.
pub(crate) const SLOW_COMMIT: Duration = Duration::from_millis(500);

/// A command waiting for the writer, with where to answer.
pub(super) struct Pending {
    pub(super) command: Command,
    pub(super) reply: Sender<Result<(KeyId, u64), Error>>,
    pub(super) route: Route,
}

/// Where a command came from, on a host of a fleet: what decides whether its batch may be
/// forwarded to the fleet's writer (`fleet/forward.rs`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// A caller of this host: forwarded if the fleet has another writer.
    Local,
    /// A caller of this host, sent back by the fleet's writer without being written: this
    /// host decides and appends it itself.
    Here,
    /// Forwarded by another host, which waits for the answer until `deadline`: never
    /// forwarded again, and not taken later.
    Forwarded { deadline: Instant },
}

/// A way into the writer's queue that the store can close: forwarded writes hold this, not
/// the queue itself, so that the writer ends when the store closes.
pub(super) type Inbox = Arc<std::sync::Mutex<Option<Sender<Request>>>>;

/// What the fleet's writes serving hands commands to: this writer's queue, until the store
/// closes.
pub(super) fn submitter(inbox: Inbox) -> crate::fleet::forward::Submit {
    Box::new(move |command, deadline| {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let guard = inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pending = Pending {
            command,
            reply,
            route: Route::Forwarded { deadline },
        };
        guard.as_ref()?.send(Request::Write(Box::new(pending))).ok()?;
        Some(answer)
    })
}

/// What callers send the writer.
pub(super) enum Request {
    Write(Box<Pending>),
    /// Write a backup of every record so far to this file; answer with the count.
    Export(PathBuf, Sender<Result<u64, Error>>),
}

/// The writer thread's state: the log it alone writes, and what it needs to fill it.
pub(super) struct Writer {
    pub(super) log: Box<dyn Log>,
    pub(super) ledger: Arc<Ledger>,
    pub(super) max_batch: usize,
    /// Most refused commands the security trail keeps.
    pub(super) keep_refused: u64,
    /// Set after a failed write or sync: entries from here on may sit in the engine
    /// unacknowledged and are discarded before the next batch.
    pub(super) unacknowledged_from: Option<u64>,
    /// A format 1 store: its format marker becomes 2 before the first block is written.
    pub(super) upgrade: bool,
    pub(super) snapshots: Option<Snapshots>,
    pub(super) integrity: Arc<IntegrityCell>,
    /// Key ids: public, so a CSPRNG seeded once from the OS rather than a system call per
    /// key (secrets still come straight from the OS).
    pub(super) ids: StdRng,
    /// On a host of a fleet: the shared log this store's log replicates.
    pub(super) replica: Option<Replica>,
    /// On a host of a fleet started without the shared log, until it joins.
    pub(super) rejoin: Option<Rejoin>,
    /// The position of the message the shared log took last from this writer.
    pub(super) appended_at: u64,
    /// This writer's queue, for the writes other hosts forward here; emptied when the
    /// store closes.
    pub(super) inbox: Inbox,
    /// Batches sent to the fleet's writer, awaiting its answer (`store/forwarding.rs`).
    pub(super) forwarding: super::forwarding::Forwarding,
    pub(super) stats: Arc<Stats>,
}

/// The commands of `batch` that can be prepared together, each against the state the
/// batch starts from; the others go to `deferred`, for the next batch. A command waits
/// when an earlier one acts on its key, or on the admin key it came through (which could
/// be gone by then), or when it acts on a key an earlier one came through; a person's
/// revocation, which may delete any admin key, is prepared alone.
fn partition(batch: Vec<Pending>, deferred: &mut VecDeque<Pending>) -> Vec<Pending> {
    let mut acted: HashSet<KeyId> = HashSet::new();
    let mut through: HashSet<KeyId> = HashSet::new();
    let mut alone = false;
    let mut now = Vec::with_capacity(batch.len());
    for p in batch {
        let (op, via) = (&p.command.op, p.command.via);
        let waits = alone
            || (op.acts_on_many() && !now.is_empty())
            || op
                .key_id()
                .is_some_and(|id| acted.contains(&id) || through.contains(&id))
            || via.is_some_and(|v| acted.contains(&v));
        if waits {
            deferred.push_back(p);
            continue;
        }
        acted.extend(op.key_id());
        through.extend(via);
        alone = op.acts_on_many();
        now.push(p);
    }
    now
}

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Request>) {
        let mut deferred: VecDeque<Pending> = VecDeque::new();
        // A single host hears from no one else; a host that has not joined, once it has.
        let mut incoming = self
            .replica
            .as_ref()
            .map_or_else(crossbeam_channel::never, |r| r.incoming.clone());
        let mut connected = self
            .rejoin
            .as_ref()
            .map_or_else(crossbeam_channel::never, |r| r.connected.clone());
        let events = self.forwarding.events();
        loop {
            while let Ok(event) = events.try_recv() {
                self.forward_event(event, &mut deferred);
            }
            self.expire_forwards(&mut deferred);
            self.release_applied(false);
            let mut batch: Vec<Pending> = deferred.drain(..).collect();
            let mut export = None;
            self.ledger.clock().tick();
            self.keep_contact(KEEP_CONTACT_EVERY);
            if batch.is_empty() {
                crossbeam_channel::select! {
                    recv(rx) -> request => match request {
                        Ok(Request::Write(p)) => batch.push(*p),
                        Ok(Request::Export(path, reply)) => export = Some((path, reply)),
                        Err(_) => break,
                    },
                    recv(incoming) -> delivered => {
                        if let Ok(delivered) = delivered {
                            self.apply_delivered(delivered);
                        }
                        continue;
                    },
                    recv(events) -> event => {
                        if let Ok(event) = event {
                            self.forward_event(event, &mut deferred);
                        }
                        continue;
                    },
                    recv(connected) -> shared => {
                        let Ok(shared) = shared else {
                            // It stopped trying (halted, or leaving).
                            connected = crossbeam_channel::never();
                            continue;
                        };
                        if let Some(rejoin) = self.rejoin.as_mut()
                            && let Some(mut replica) = rejoin.join(shared, &mut *self.log, &self.ledger)
                        {
                            // Without it this host still writes; it only takes no forwarded write.
                            let _ = replica.serve_writes(
                                self.ledger.chain().clone(),
                                submitter(Arc::clone(&self.inbox)),
                                self.forwarding.hearer(),
                            );
                            incoming = replica.incoming.clone();
                            connected = crossbeam_channel::never();
                            self.replica = Some(replica);
                            self.rejoin = None;
                        }
                        continue;
                    },
                    default(self.forwarding.patience(TICK)) => {
                        self.poll_shared();
                        continue;
                    },
                }
            }
            while batch.len() < self.max_batch && export.is_none() {
                match rx.try_recv() {
                    Ok(Request::Write(p)) => batch.push(*p),
                    Ok(Request::Export(path, reply)) => export = Some((path, reply)),
                    Err(_) => break,
                }
            }
            // Apply what other hosts appended first, so that the batch is prepared against
            // the freshest state (and more often wins the race to append).
            while let Ok(delivered) = incoming.try_recv() {
                self.apply_delivered(delivered);
            }
            if !batch.is_empty() {
                let (started, commands) = (Instant::now(), batch.len());
                let committed = self.commit(batch, &mut deferred);
                // The commands deferred to the next batch are counted with it.
                self.stats.committed(commands - deferred.len(), started.elapsed());
                if committed.is_err() {
                    break;
                }
            }
            if let Some(s) = self
                .snapshots
                .as_mut()
                .filter(|_| self.integrity.refusal().is_none())
            {
                s.save_if(&self.ledger, snapshot::Policy::due, false);
            }
            if let Some((path, reply)) = export {
                let head = self.ledger.head();
                let _ = reply.send(
                    super::joining::history_held(&*self.log)
                        .and_then(|()| backup::export(&*self.log, head, self.ledger.chain(), &path)),
                );
            }
        }
        self.finish_forwarding(&events);
        if self.unacknowledged_from.is_some() && self.roll_back() {
            let _ = self.log.sync();
        }
        self.keep_contact(Duration::ZERO);
        if let Some(replica) = self.replica.as_mut() {
            let _ = replica.settle(&mut *self.log);
        }
        let damaged = self.integrity.refusal().is_some();
        if let Some(s) = self.snapshots.as_mut() {
            // A damaged state is never saved: the next open must find the damage again.
            if !damaged {
                s.save_if(&self.ledger, snapshot::Policy::due_at_close, true);
            }
            s.finish();
        }
    }

    /// Removes the entries of a failed batch from the engine (they may sit there, written
    /// but not synced) and restores the head. Best effort: if it fails too, the next batch
    /// discards them first.
    fn roll_back(&mut self) -> bool {
        let Ok(head) = self.ledger.encode_head(self.ledger.head()) else {
            return false;
        };
        let undo = Batch {
            discard_from: self.unacknowledged_from,
            entries: &[],
            head: &head,
        };
        let ok = self.log.write(&undo).is_ok();
        if ok {
            self.unacknowledged_from = None;
        }
        ok
    }

    /// Prepares, writes, syncs and accepts one batch, answering every caller in it.
    /// Commands that act on a key already acted on in this batch wait for the next one,
    /// so each is checked against a state that holds everything before it.
    fn commit(&mut self, batch: Vec<Pending>, deferred: &mut VecDeque<Pending>) -> Result<(), ()> {
        let now = partition(batch, deferred);
        if let Some(refusal) = self.integrity.refusal() {
            for p in now {
                let _ = p.reply.send(Err(refusal.replicate()));
            }
            return Ok(());
        }
        if let Some(rejoin) = &self.rejoin {
            // Nothing is prepared: a host that has not joined may hold an old state.
            let refusal = rejoin.refusal();
            for p in now {
                let _ = p.reply.send(Err(refusal.replicate()));
            }
            return Ok(());
        }
        if self.replica.is_some() {
            return self.commit_shared(now, deferred);
        }
        let commands: Vec<&Command> = now.iter().map(|p| &p.command).collect();
        let prepared = self.ledger.prepare(&commands, &mut self.ids);
        let refused = self.refusals(&commands, &prepared.outcomes);
        let mut outcomes = prepared.outcomes.into_iter();
        let replies = now.into_iter().map(|p| p.reply);
        let Some(first) = prepared.entries.first().map(|e| e.0) else {
            if refused {
                // Best effort: a refusal stands whether or not its trace is durable.
                let _ = self.log.sync();
            }
            for (reply, outcome) in replies.zip(outcomes) {
                let _ = reply.send(outcome);
            }
            return Ok(());
        };
        if let Err(e) = self.make_durable(&prepared.entries, prepared.head) {
            self.unacknowledged_from = Some(self.unacknowledged_from.map_or(first, |s| s.min(first)));
            self.roll_back();
            for (reply, outcome) in replies.zip(outcomes.by_ref()) {
                let _ = reply.send(outcome.and(Err(e.replicate())));
            }
            return Ok(());
        }
        self.unacknowledged_from = None;
        let accepted = self.ledger.accept(&prepared.entries);
        for (reply, outcome) in replies.zip(outcomes) {
            let outcome = match &accepted {
                Ok(()) => outcome,
                Err(e) => outcome.and(Err(e.replicate())),
            };
            let _ = reply.send(outcome);
        }
        // The log holds records the state could not take: stop writing.
        accepted.map_err(|e| {
            tracing::error!(
                target: "keyledger::store",
                error = e.code(),
                "the writer stopped: the log holds records the state could not take ({e}); \
                 every write is refused until the store is opened again"
            );
        })
    }

    /// Appends the commands the access rules refused to the security trail (made
    /// durable by the batch's sync); returns whether there were any.
    fn refusals(&mut self, commands: &[&Command], outcomes: &[Result<(KeyId, u64), Error>]) -> bool {
        let at = self.ledger.clock().now_micros();
        let records: Vec<Vec<u8>> = commands
            .iter()
            .zip(outcomes)
            .filter_map(|(cmd, outcome)| {
                let e = outcome.as_ref().err()?;
                let r = trail::record_of(at, &cmd.actor, cmd.via, cmd.op.action(), cmd.op.key_id(), e)?;
                crate::persist::trail::format::encode_refused(&r).ok()
            })
            .collect();
        !records.is_empty() && self.log.append_refused(&records, self.keep_refused).is_ok()
    }

    /// [`Writer::write_and_sync`], logging a stall (slower than [`SLOW_COMMIT`]) and a
    /// failure.
    fn make_durable(&mut self, entries: &[crate::log::Entry], head: crate::chain::Head) -> Result<(), Error> {
        let started = Instant::now();
        let written = self.write_and_sync(entries, head);
        let elapsed = started.elapsed();
        if let Err(e) = &written {
            tracing::warn!(
                target: "keyledger::store",
                records = entries.len(),
                error = e.code(),
                "a batch could not be made durable; its callers get the error: {e}"
            );
        } else if elapsed > SLOW_COMMIT {
            tracing::warn!(
                target: "keyledger::store",
                records = entries.len(),
                bytes = entries.iter().map(|e| e.1.len()).sum::<usize>(),
                elapsed_ms = super::background::millis(elapsed),
                "writer stall: a batch took longer than {} ms to make durable",
                SLOW_COMMIT.as_millis()
            );
        }
        written
    }

    fn write_and_sync(
        &mut self,
        entries: &[crate::log::Entry],
        head: crate::chain::Head,
    ) -> Result<(), Error> {
        if self.upgrade {
            self.log
                .set_meta(MetaKey::Format, &codec::STORE_FORMAT.to_le_bytes())?;
            self.log.sync()?;
            self.upgrade = false;
        }
        let head = self.ledger.encode_head(head)?;
        self.log.write(&Batch {
            discard_from: self.unacknowledged_from,
            entries,
            head: &head,
        })?;
        match self.replica.as_mut() {
            // The shared log acknowledged the entries: the local log is a copy of it,
            // synced when idle (a crash only lengthens the next catch-up).
            Some(replica) => {
                let bytes = entries.iter().map(|e| e.1.len()).sum();
                replica.written(&mut *self.log, self.appended_at, bytes)?;
            }
            None => self.log.sync()?,
        }
        Ok(())
    }

    /// Applies messages other hosts appended to the shared log. A failure has halted this
    /// host's writes already (or is the stream out of reach, which the next poll retries).
    fn apply_delivered(&mut self, delivered: crate::log::Delivered) {
        // A halted host applies nothing more: the message that halted it stays unapplied,
        // so nothing after it fits.
        if let Some(replica) = self.replica.as_mut()
            && replica.fleet.halted().is_none()
        {
            let _ = replica.apply_delivered(&mut *self.log, &self.ledger, delivered);
        }
    }

    /// Keeps the fleet's last acknowledgement of this host in its local log, if it changed
    /// and the last one kept is `every` old. A failure has halted this host's writes.
    fn keep_contact(&mut self, every: Duration) {
        if let Some(replica) = self.replica.as_mut() {
            let _ = replica.keep_contact(&mut *self.log, every);
        }
    }

    /// When idle: reads the shared log's end and catches up with it, in case deliveries
    /// stalled.
    fn poll_shared(&mut self) {
        if let Some(replica) = self.replica.as_mut() {
            let _ = replica.settle(&mut *self.log);
            if replica.fleet.halted().is_none() {
                let _ = replica.poll(&mut *self.log, &self.ledger);
            }
        }
    }

    /// [`Writer::commit`] on a host of a fleet: the batch's entries are appended to the
    /// shared log as one message, then written locally and accepted. A batch that loses
    /// the race to append is prepared again against the state the winner left, so each
    /// command gets the answer that state gives (deleting a key another host just deleted
    /// is [`Error::KeyDeleted`]). A batch too large for one message is split.
    fn commit_shared(&mut self, now: Vec<Pending>, deferred: &mut VecDeque<Pending>) -> Result<(), ()> {
        let mut now = self.forward(now, deferred);
        if now.is_empty() {
            return Ok(());
        }
        let mut races = 0;
        let (prepared, commands_len) = loop {
            let halted = self.replica.as_ref().and_then(|r| r.fleet.halted());
            if let Some(reason) = halted {
                for p in now {
                    let _ = p.reply.send(Err(Error::FleetHalted {
                        reason: reason.clone(),
                    }));
                }
                return Ok(());
            }
            let bootstrapping = self.replica.as_ref().and_then(|r| r.fleet.bootstrapping());
            if let Some((have, until)) = bootstrapping {
                let e = Error::StreamUnavailable {
                    reason: format!(
                        "the shared log is still being bootstrapped: this host has records up to {have} \
                         of the {until} it begins with; writes wait until all are in"
                    ),
                };
                for p in now {
                    let _ = p.reply.send(Err(e.replicate()));
                }
                return Ok(());
            }
            let commands: Vec<&Command> = now.iter().map(|p| &p.command).collect();
            let prepared = self.ledger.prepare(&commands, &mut self.ids);
            if prepared.entries.is_empty() {
                break (prepared, commands.len());
            }
            let Some(replica) = self.replica.as_mut() else {
                return Err(());
            };
            match replica.append(&mut *self.log, &self.ledger, &prepared.entries) {
                Ok(Appended::At(position)) => {
                    self.appended_at = position;
                    break (prepared, commands.len());
                }
                Ok(Appended::Applied) => {
                    // The same records, applied already: answer as prepared.
                    let commands: Vec<&Command> = now.iter().map(|p| &p.command).collect();
                    self.refusals(&commands, &prepared.outcomes);
                    for (p, outcome) in now.into_iter().zip(prepared.outcomes) {
                        let _ = p.reply.send(outcome);
                    }
                    return Ok(());
                }
                Ok(Appended::Lost) if races < crate::fleet::replica::MAX_RACES => races += 1,
                Ok(Appended::Lost) => {
                    let e = Error::StreamUnavailable {
                        reason: format!("lost the race to append {races} times in a row; try again"),
                    };
                    return self.answer_all(now, prepared.outcomes, &e);
                }
                Ok(Appended::TooLarge(limit)) if now.len() > 1 => {
                    // Half now, half with the next batch.
                    let later = now.split_off(now.len() / 2);
                    for p in later.into_iter().rev() {
                        deferred.push_front(p);
                    }
                    let _ = limit;
                }
                Ok(Appended::TooLarge(limit)) => {
                    let e = Error::invalid(
                        "batch",
                        format!(
                            "its records make a message larger than the shared log takes ({limit} bytes): \
                             import fewer keys at a time"
                        ),
                    );
                    return self.answer_all(now, prepared.outcomes, &e);
                }
                Err(e) => return self.answer_all(now, prepared.outcomes, &e),
            }
        };
        debug_assert_eq!(commands_len, now.len());
        let commands: Vec<&Command> = now.iter().map(|p| &p.command).collect();
        let refused = self.refusals(&commands, &prepared.outcomes);
        let replies = now.into_iter().map(|p| p.reply);
        let outcomes = prepared.outcomes.into_iter();
        if prepared.entries.is_empty() {
            if refused {
                let _ = self.log.sync();
            }
            for (reply, outcome) in replies.zip(outcomes) {
                let _ = reply.send(outcome);
            }
            return Ok(());
        }
        // In the shared log now, which is the acknowledgement: accepted here first, so
        // that a failing local write halts this host without turning a write every other
        // host applies into an error for its caller.
        let accepted = self.ledger.accept(&prepared.entries);
        let durable = accepted
            .as_ref()
            .map_err(Error::replicate)
            .and_then(|()| self.make_durable(&prepared.entries, prepared.head));
        if let Some(replica) = self.replica.as_ref() {
            match (&accepted, durable) {
                (Ok(()), Ok(())) => {
                    replica.fleet.written(prepared.head, self.appended_at);
                    replica.fleet.applied(prepared.head, self.appended_at);
                }
                (Ok(()), Err(e)) => {
                    replica.fleet.applied(prepared.head, self.appended_at);
                    replica.fleet.halt(format!(
                        "this host's log could not take its own appended records: {e}"
                    ));
                }
                (Err(e), _) => replica.fleet.halt(format!(
                    "this host's state could not take its own appended records: {e}"
                )),
            }
        }
        for (reply, outcome) in replies.zip(outcomes) {
            let outcome = match &accepted {
                Ok(()) => outcome,
                Err(e) => outcome.and(Err(e.replicate())),
            };
            let _ = reply.send(outcome);
        }
        Ok(())
    }

    /// Answers the commands of a batch that was not appended: a command the rules refused
    /// gets its own error (and goes to the security trail), the others `e`.
    fn answer_all(
        &mut self,
        now: Vec<Pending>,
        outcomes: Vec<Result<(KeyId, u64), Error>>,
        e: &Error,
    ) -> Result<(), ()> {
        let commands: Vec<&Command> = now.iter().map(|p| &p.command).collect();
        if self.refusals(&commands, &outcomes) {
            let _ = self.log.sync();
        }
        for (p, outcome) in now.into_iter().zip(outcomes) {
            let _ = p.reply.send(outcome.and(Err(e.replicate())));
        }
        Ok(())
    }
}
