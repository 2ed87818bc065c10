//! The writer's side of forwarded writes on a host of a fleet (`fleet/forward.rs`): a batch
//! of this host's callers goes to the fleet's writer without waiting, several at a time,
//! and its callers are answered when the writer's answer comes; commands forwarded by
//! other hosts that come too late are not taken.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::writer::{Pending, Route, Writer};
use crate::fleet::forward::wire::{OutcomeV1, forwardable};
use crate::fleet::replica::{Forwarded, Sent};
use crate::ledger::Command;
use crate::log::ForwardError;
use crate::model::error::Error;
use crate::model::id::KeyId;

/// Batches sent and not yet answered, at most: past it, the writer waits for the oldest
/// answer before it sends another.
const MAX_IN_FLIGHT: usize = 4;

type Answer = (u64, Result<Vec<u8>, ForwardError>);
/// A caller's answer: its key and record, or why not.
type Reply = Result<(KeyId, u64), Error>;

/// How long answered callers wait for the writer's message to be delivered here before the
/// writer reads it from the stream.
const DELIVERY_PATIENCE: Duration = Duration::from_millis(500);

/// Callers whose commands the writer decided, until this host has applied the stream
/// position it answered with (so that a key made through this host verifies here at once).
struct Applying {
    position: u64,
    since: Instant,
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
    tx: Sender<Answer>,
    rx: Receiver<Answer>,
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
    /// How long the writer's loop may sleep when idle: `tick`, or a moment while answered
    /// callers wait for their writes to be delivered here.
    pub(super) fn patience(&self, tick: Duration) -> Duration {
        if self.applying.is_empty() {
            tick
        } else {
            Duration::from_millis(20)
        }
    }

    /// Where the answers arrive, for the writer's loop to wait on.
    pub(super) fn answers(&self) -> Receiver<Answer> {
        self.rx.clone()
    }
}

impl Writer {
    /// On a host of a fleet: sends the batch to the fleet's writer if there is another one
    /// (its answer comes later, through [`Writer::forward_answered`]); drops forwarded
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
            let Ok((ticket, answer)) = self.forwarding.rx.recv() else {
                return now;
            };
            self.forward_answered(ticket, answer, deferred);
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
            Box::new(move |answer| {
                let _ = tx.send((ticket, answer));
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

    /// The fleet's writer answered batch `ticket` (or it went unanswered): answers its
    /// callers; what the writer did not write goes back to `deferred`, to be decided here.
    pub(super) fn forward_answered(
        &mut self,
        ticket: u64,
        answer: Result<Vec<u8>, ForwardError>,
        deferred: &mut VecDeque<Pending>,
    ) {
        let Some(i) = self.forwarding.in_flight.iter().position(|f| f.ticket == ticket) else {
            return;
        };
        let InFlight { sent, callers, .. } = self.forwarding.in_flight.swap_remove(i);
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        let here = |mut p: Pending, deferred: &mut VecDeque<Pending>| {
            p.route = Route::Here;
            deferred.push_back(p);
        };
        match replica.answered(&self.ledger, &sent, answer) {
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
                for (p, outcome) in callers.into_iter().zip(outcomes) {
                    match outcome {
                        OutcomeV1::Done { id, seq } => answers.push((p, Ok((KeyId(id), seq)))),
                        OutcomeV1::Uncertain(reason) => {
                            answers.push((p, Err(Error::StreamUnavailable { reason })));
                        }
                        // Decided here against the state the writer's appends left, which
                        // this host applies first: the same answer, or a write of its own.
                        OutcomeV1::NotWritten => here(p, deferred),
                    }
                }
                self.forwarding.applying.push_back(Applying {
                    position,
                    since: Instant::now(),
                    answers,
                });
                if !deferred.is_empty() {
                    self.release_applied(true);
                }
            }
        }
        self.release_applied(false);
    }

    /// Answers the callers whose writes this host has applied; reads the stream for those
    /// whose messages were not delivered in time (or for all, `now`).
    pub(super) fn release_applied(&mut self, now: bool) {
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        let overdue = self
            .forwarding
            .applying
            .iter()
            .filter(|a| now || a.since.elapsed() > DELIVERY_PATIENCE)
            .map(|a| a.position)
            .max();
        if let Some(position) = overdue {
            replica.apply_through(&mut *self.log, &self.ledger, position);
        }
        let applied = replica.position();
        self.forwarding.applying.retain_mut(|a| {
            if a.position > applied {
                return true;
            }
            for (p, answer) in a.answers.drain(..) {
                let _ = p.reply.send(answer);
            }
            false
        });
    }

    /// At close: waits for the answers still to come (each within the request's timeout),
    /// so that no caller is left without one. What is not written is answered as closed.
    pub(super) fn finish_forwarding(&mut self, answers: &Receiver<Answer>) {
        let mut deferred = VecDeque::new();
        while !self.forwarding.in_flight.is_empty() {
            match answers.recv() {
                Ok((ticket, answer)) => self.forward_answered(ticket, answer, &mut deferred),
                Err(_) => break,
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
