//! The writer's side of forwarded writes on a host of a fleet (`fleet/forward.rs`): a batch
//! of this host's callers goes to the fleet's writer without waiting, several at a time,
//! and its callers are answered when the writer's answer comes; commands forwarded by
//! other hosts that come too late are not taken.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::writer::{Pending, Route, Writer};
use crate::fleet::forward::Hear;
use crate::fleet::forward::wire::{OutcomeV1, forwardable};
use crate::fleet::replica::{Forwarded, Sent, Unanswered};
use crate::ledger::Command;
use crate::model::error::Error;
use crate::model::id::KeyId;

/// Batches sent and not yet answered, at most: past it, the writer waits for the oldest
/// answer before it sends another.
const MAX_IN_FLIGHT: usize = 4;

/// How long answered callers wait for the writer's message to be delivered here before the
/// writer reads it from the stream.
const DELIVERY_PATIENCE: Duration = Duration::from_millis(500);

/// What reaches the writer thread about its requests: an answer heard (anyone may publish
/// one), or the server's word that request `ticket` reached nobody.
pub(super) enum Event {
    Answer(Vec<u8>),
    Undelivered(u64),
}

/// A caller's answer: its key and record, or why not.
type Reply = Result<(KeyId, u64), Error>;

/// Callers whose commands the writer decided, until this host has applied the stream
/// position it answered with (so that a key made through this host verifies here at once).
struct Applying {
    position: u64,
    /// When this host reads the stream for it, if it has not been delivered by then
    /// (`None`: read already).
    read_at: Option<Instant>,
    /// When its callers are answered even if this host has not applied it.
    give_up_at: Instant,
    answers: Vec<(Pending, Reply)>,
}

/// A batch sent to the fleet's writer: its callers, until the answer comes.
struct InFlight {
    ticket: u64,
    sent: Sent,
    callers: Vec<Pending>,
}

pub(crate) struct Forwarding {
    in_flight: Vec<InFlight>,
    applying: VecDeque<Applying>,
    next: u64,
    tx: Sender<Event>,
    rx: Receiver<Event>,
}

impl Default for Forwarding {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Forwarding {
            in_flight: Vec::new(),
            applying: VecDeque::new(),
            next: 0,
            tx,
            rx,
        }
    }
}

impl Forwarding {
    /// How long the writer's loop may sleep when idle: `tick`, or until the next thing
    /// due (a request's deadline, a read of the stream for answered callers, giving up on
    /// their delivery).
    pub(super) fn patience(&self, tick: Duration) -> Duration {
        let now = Instant::now();
        let deadlines = self.in_flight.iter().map(|f| f.sent.deadline);
        let applying = self.applying.iter().map(|a| a.read_at.unwrap_or(a.give_up_at));
        deadlines
            .chain(applying)
            .map(|due| due.saturating_duration_since(now))
            .fold(tick, Duration::min)
    }

    /// Where the events arrive, for the writer's loop to wait on.
    pub(super) fn events(&self) -> Receiver<Event> {
        self.rx.clone()
    }

    /// Where the answers heard on this host's answers subject go.
    pub(crate) fn hearer(&self) -> Hear {
        let tx = self.tx.clone();
        Box::new(move |bytes| {
            let _ = tx.send(Event::Answer(bytes));
        })
    }
}

impl Writer {
    /// On a host of a fleet: sends the batch to the fleet's writer if there is another one
    /// (its answer comes later, through [`Writer::forward_event`]); drops forwarded
    /// commands whose sender stopped waiting. Returns the commands this host is to decide
    /// and append itself now.
    pub(super) fn forward(&mut self, now: Vec<Pending>, deferred: &mut VecDeque<Pending>) -> Vec<Pending> {
        let late = Instant::now();
        let (now, expired): (Vec<Pending>, Vec<Pending>) = now
            .into_iter()
            .partition(|p| !matches!(p.route, Route::Forwarded { deadline } if deadline < late));
        for p in expired {
            let _ = p.reply.send(Err(Error::invalid(
                "forwarded write",
                "it reached the writer after its sender stopped waiting; nothing was written",
            )));
        }
        let eligible = !now.is_empty()
            && now
                .iter()
                .all(|p| p.route == Route::Local && forwardable(&p.command.op))
            && self
                .replica
                .as_ref()
                .is_some_and(|r| r.fleet.halted().is_none() && r.fleet.bootstrapping().is_none());
        if !eligible {
            return now;
        }
        while self.forwarding.in_flight.len() >= MAX_IN_FLIGHT {
            let wait = self.forwarding.patience(Duration::from_secs(1));
            match self.forwarding.rx.recv_timeout(wait) {
                Ok(event) => self.forward_event(event, deferred),
                Err(_) => self.expire_forwards(deferred),
            }
        }
        let ticket = self.forwarding.next;
        self.forwarding.next += 1;
        let tx = self.forwarding.tx.clone();
        let commands: Vec<&Command> = now.iter().map(|p| &p.command).collect();
        let Some(replica) = self.replica.as_mut() else {
            return now;
        };
        let sent = replica.send(
            &self.ledger,
            &commands,
            Box::new(move || {
                let _ = tx.send(Event::Undelivered(ticket));
            }),
        );
        match sent {
            Some(sent) => {
                self.forwarding.in_flight.push(InFlight {
                    ticket,
                    sent,
                    callers: now,
                });
                Vec::new()
            }
            None => now,
        }
    }

    /// An answer heard, or a request that reached nobody: answers the request's callers;
    /// what the writer did not write goes back to `deferred`, to be decided here. An
    /// answer that is not the fleet's, or to no request in flight, is dropped.
    pub(super) fn forward_event(&mut self, event: Event, deferred: &mut VecDeque<Pending>) {
        let Some(replica) = self.replica.as_ref() else {
            return;
        };
        let found = match event {
            Event::Undelivered(ticket) => self
                .forwarding
                .in_flight
                .iter()
                .position(|f| f.ticket == ticket)
                .map(|i| (i, Err(Unanswered::Undelivered))),
            Event::Answer(bytes) => replica.open_answer(&self.ledger, &bytes).and_then(|a| {
                self.forwarding
                    .in_flight
                    .iter()
                    .position(|f| f.sent.id == a.id)
                    .map(|i| (i, Ok(a)))
            }),
        };
        if let Some((i, answer)) = found {
            let flight = self.forwarding.in_flight.swap_remove(i);
            self.settle_forward(flight, answer, deferred);
        }
        self.release_applied(false);
    }

    /// Requests unanswered past their deadline: their callers learn the write may or may
    /// not have landed.
    pub(super) fn expire_forwards(&mut self, deferred: &mut VecDeque<Pending>) {
        let now = Instant::now();
        while let Some(i) = self
            .forwarding
            .in_flight
            .iter()
            .position(|f| f.sent.deadline <= now)
        {
            let flight = self.forwarding.in_flight.swap_remove(i);
            self.settle_forward(flight, Err(Unanswered::TimedOut), deferred);
        }
    }

    fn settle_forward(
        &mut self,
        InFlight { sent, callers, .. }: InFlight,
        answer: Result<crate::fleet::forward::wire::AnswerV1, Unanswered>,
        deferred: &mut VecDeque<Pending>,
    ) {
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        let here = |mut p: Pending, deferred: &mut VecDeque<Pending>| {
            p.route = Route::Here;
            deferred.push_back(p);
        };
        match replica.answered(&sent, answer) {
            Forwarded::No => {
                for p in callers {
                    here(p, deferred);
                }
            }
            Forwarded::Uncertain(reason) => {
                for p in callers {
                    let _ = p.reply.send(Err(Error::StreamUnavailable {
                        reason: reason.clone(),
                    }));
                }
            }
            Forwarded::Answered(outcomes, position) => {
                let mut answers = Vec::new();
                let mut decide_here = false;
                for (p, outcome) in callers.into_iter().zip(outcomes) {
                    match outcome {
                        OutcomeV1::Done { id, seq } => answers.push((p, Ok((KeyId(id), seq)))),
                        OutcomeV1::Uncertain(reason) => {
                            answers.push((p, Err(Error::StreamUnavailable { reason })));
                        }
                        // Decided here against the state the writer's appends left, which
                        // this host applies first: the same answer, or a write of its own.
                        OutcomeV1::NotWritten => {
                            decide_here = true;
                            here(p, deferred);
                        }
                    }
                }
                let now = Instant::now();
                self.forwarding.applying.push_back(Applying {
                    position,
                    read_at: Some(now + DELIVERY_PATIENCE),
                    give_up_at: now + replica.fleet.options.request_timeout,
                    answers,
                });
                self.release_applied(decide_here);
            }
        }
    }

    /// Answers the callers whose writes this host has applied. For those whose messages
    /// were not delivered in time (or for all, `now`), reads the stream once; those still
    /// not applied after a request's timeout, or on a host that stopped applying
    /// (halted), are answered anyway: their writes are in the shared log.
    pub(super) fn release_applied(&mut self, now: bool) {
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        let at = Instant::now();
        let overdue = self
            .forwarding
            .applying
            .iter_mut()
            .filter(|a| a.read_at.is_some_and(|read_at| now || read_at <= at))
            .map(|a| {
                a.read_at = None;
                a.position
            })
            .max();
        if let Some(position) = overdue {
            replica.apply_through(&mut *self.log, &self.ledger, position);
        }
        let applied = replica.position();
        let give_up = replica.fleet.halted().is_some();
        self.forwarding.applying.retain_mut(|a| {
            if a.position > applied && !give_up && at < a.give_up_at {
                return true;
            }
            for (p, answer) in a.answers.drain(..) {
                let _ = p.reply.send(answer);
            }
            false
        });
    }

    /// At close: waits for the answers still to come (each until its deadline), so that no
    /// caller is left without one. What is not written is answered as closed.
    pub(super) fn finish_forwarding(&mut self, events: &Receiver<Event>) {
        let mut deferred = VecDeque::new();
        while !self.forwarding.in_flight.is_empty() {
            match events.recv_timeout(self.forwarding.patience(Duration::from_secs(1))) {
                Ok(event) => self.forward_event(event, &mut deferred),
                Err(_) => self.expire_forwards(&mut deferred),
            }
        }
        self.release_applied(true);
        // The writes are in the shared log, whether or not this host applied them.
        for a in self.forwarding.applying.drain(..) {
            for (p, answer) in a.answers {
                let _ = p.reply.send(answer);
            }
        }
        for p in deferred {
            let _ = p.reply.send(Err(Error::Closed));
        }
    }
}
