//! Forwarded writes: a host of a fleet sends its batches to one writer (the live host
//! with the smallest id, [`super::Fleet::write_leader`]), which prepares them with its own
//! and appends them in one message, so that hosts stop racing for each stream position.
//!
//! Nothing here is trusted for safety: every append still names the position it follows
//! (a writer that is not the last one to append loses and prepares again), and a host
//! that cannot reach the writer appends its batches itself. What this module guards is
//! the writer's door: a request is taken only if it is sealed with the fleet's chain key
//! for this stream and this host, recent by this host's clock, and never seen before
//! (`wire.rs` has the bytes). Refused requests are counted and get no answer.

pub(crate) mod wire;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::Fleet;
use crate::chain::Chain;
use crate::ledger::Command;
use crate::log::Writes;
use crate::model::error::Error;
use crate::model::id::KeyId;
use wire::{AnswerBodyV1, AnswerV1, OutcomeV1};

/// How far a request's time may be from this host's clock, either way: older requests
/// are refused as replays (their ids are forgotten after twice this).
pub(crate) const WINDOW_MICROS: i64 = 30_000_000;
/// The most commands one request may carry.
pub(crate) const MAX_COMMANDS: usize = 4096;

/// Hands a command to this host's writer, to be taken no later than the instant given;
/// `None` once the writer is gone.
pub(crate) type Submit =
    Box<dyn Fn(Command, Instant) -> Option<Receiver<Result<(KeyId, u64), Error>>> + Send + Sync>;

/// A request taken: the answers it waits for, and where its answer goes.
struct Job {
    id: [u8; 16],
    replies: Vec<Receiver<Result<(KeyId, u64), Error>>>,
    answer: Box<dyn FnOnce(Vec<u8>) + Send>,
}

/// Ids of the requests taken within the window, oldest first.
#[derive(Default)]
struct Seen {
    ids: HashSet<[u8; 16]>,
    order: VecDeque<(Instant, [u8; 16])>,
}

/// The writer's side: takes requests on this host's writes subject.
pub(crate) struct Serving {
    fleet: Arc<Fleet>,
    chain: Chain,
    stream_id: [u8; 16],
    submit: Submit,
    seen: Mutex<Seen>,
    jobs: Sender<Job>,
}

impl Serving {
    /// Starts the thread that answers taken requests once the writer decided them; it
    /// ends when the serving is dropped.
    pub(crate) fn start(
        fleet: Arc<Fleet>,
        chain: Chain,
        stream_id: [u8; 16],
        submit: Submit,
    ) -> Result<Self, Error> {
        let (jobs, taken) = crossbeam_channel::unbounded::<Job>();
        let answering = Arc::clone(&fleet);
        let sealing = chain.clone();
        std::thread::Builder::new()
            .name("keyledger-forward".into())
            .spawn(move || {
                for job in taken {
                    let outcomes: Vec<OutcomeV1> = job.replies.iter().map(|r| outcome(r.recv())).collect();
                    let answer = AnswerV1 {
                        stream_id,
                        from: answering.host().to_owned(),
                        id: job.id,
                        answer: AnswerBodyV1::Taken {
                            position: answering.position(),
                            outcomes,
                        },
                    };
                    if let Ok(bytes) = wire::seal_answer(&answer, &sealing) {
                        (job.answer)(bytes);
                    }
                }
            })?;
        Ok(Serving {
            fleet,
            chain,
            stream_id,
            submit,
            seen: Mutex::new(Seen::default()),
            jobs,
        })
    }

    /// Checks a request: sealed for this stream and host, recent, new. Returns its
    /// commands and how long its sender waits.
    fn admit(&self, bytes: &[u8]) -> Result<(wire::RequestV1, Duration), String> {
        let request = wire::open_request(bytes, &self.chain)?;
        if request.stream_id != self.stream_id {
            return Err(format!("sealed for another stream, by {:?}", request.from));
        }
        if request.to != self.fleet.host() {
            return Err(format!(
                "sealed by {:?} for host {:?}, not this one",
                request.from, request.to
            ));
        }
        if request.to_run != self.fleet.run() {
            return Err(format!(
                "sealed by {:?} for an earlier run of this host (a replay across a restart)",
                request.from
            ));
        }
        if request.commands.len() > MAX_COMMANDS {
            return Err(format!(
                "{} commands, more than {MAX_COMMANDS}",
                request.commands.len()
            ));
        }
        let drift = crate::ledger::now_micros().saturating_sub(request.at);
        if drift.abs() > WINDOW_MICROS {
            return Err(format!(
                "sent by {:?} {:.1} s from this host's clock: outside the {} s a request is taken in \
                 (replayed, or their clocks disagree)",
                request.from,
                drift as f64 / 1e6,
                WINDOW_MICROS / 1_000_000
            ));
        }
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let forget = Duration::from_micros(2 * WINDOW_MICROS as u64);
        while seen
            .order
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > forget)
        {
            if let Some((_, id)) = seen.order.pop_front() {
                seen.ids.remove(&id);
            }
        }
        if !seen.ids.insert(request.id) {
            return Err(format!(
                "a request of {:?} taken before, sent again (a replay)",
                request.from
            ));
        }
        seen.order.push_back((now, request.id));
        let wait = Duration::from_millis(u64::from(request.wait_ms));
        Ok((request, wait))
    }

    fn decline(&self, request: &wire::RequestV1, why: String, answer: Box<dyn FnOnce(Vec<u8>) + Send>) {
        let declined = AnswerV1 {
            stream_id: self.stream_id,
            from: self.fleet.host().to_owned(),
            id: request.id,
            answer: AnswerBodyV1::Declined(why),
        };
        if let Ok(bytes) = wire::seal_answer(&declined, &self.chain) {
            answer(bytes);
        }
    }
}

/// What a command's answer from this host's writer becomes for its sender.
fn outcome(reply: Result<Result<(KeyId, u64), Error>, crossbeam_channel::RecvError>) -> OutcomeV1 {
    match reply {
        Ok(Ok((id, seq))) => OutcomeV1::Done { id: id.0, seq },
        // The append was not answered, or the writer could not tell: the sender says so.
        Ok(Err(Error::StreamUnavailable { reason })) => OutcomeV1::Uncertain(reason),
        Ok(Err(_)) => OutcomeV1::NotWritten,
        Err(_) => OutcomeV1::Uncertain("the fleet's writer stopped before it answered".to_owned()),
    }
}

impl Writes for Serving {
    fn host(&self) -> &str {
        self.fleet.host()
    }

    fn request(&self, bytes: &[u8], answer: Box<dyn FnOnce(Vec<u8>) + Send>) {
        let (request, wait) = match self.admit(bytes) {
            Ok(admitted) => admitted,
            Err(why) => return self.fleet.routes.refused(why),
        };
        if let Some(reason) = self.fleet.halted() {
            return self.decline(&request, format!("it stopped writing: {reason}"), answer);
        }
        let commands: Result<Vec<Command>, String> =
            request.commands.into_iter().map(wire::command_of).collect();
        let commands = match commands {
            Ok(c) => c,
            Err(why) => {
                let why = format!("a command of {:?} breaks the rules: {why}", request.from);
                self.fleet.routes.refused(why);
                return;
            }
        };
        // Taken while the sender still waits, with room for the answer's way back.
        let deadline = Instant::now() + wait.mul_f64(0.8);
        let n = commands.len();
        let replies: Option<Vec<_>> = commands.into_iter().map(|c| (self.submit)(c, deadline)).collect();
        let Some(replies) = replies else {
            return;
        };
        self.fleet.routes.served(n);
        let _ = self.jobs.send(Job {
            id: request.id,
            replies,
            answer,
        });
    }

    fn is_closing(&self) -> bool {
        self.fleet.is_closing()
    }
}

#[cfg(test)]
mod tests;
