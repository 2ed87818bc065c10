//! Forwarded writes: a host of a fleet sends its batches to one writer (the live host
//! with the smallest id, [`super::Fleet::write_leader`]), which prepares them with its own
//! and appends them in one message, so that hosts stop racing for each stream position.
//!
//! Nothing here is trusted for safety: every append still names the position it follows
//! (a writer that is not the last one to append loses and prepares again), and a host
//! that cannot reach the writer appends its batches itself. What this module guards is
//! the writer's door: a request is taken only if it is sealed with the fleet's chain key
//! for this stream, this host and its run, recent by this host's clock, never seen before,
//! and its sender still waits for it (`wire.rs` has the bytes). Refused requests are
//! counted; those not shown to be the fleet's get no answer, the fleet's are declined.

pub(crate) mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::Fleet;
use crate::chain::Chain;
use crate::ledger::Command;
use crate::log::AnswerTo as Answer;
use crate::log::Writes;
use crate::model::error::Error;
use crate::model::id::KeyId;
use wire::{AnswerBodyV1, AnswerV1, OutcomeV1};

/// How far a request's time may be from this host's clock, either way: older requests
/// are refused as replays (their ids are kept until their time is this and
/// [`FORGET_MARGIN_MICROS`] behind).
pub(crate) const WINDOW_MICROS: i64 = 30_000_000;
/// The most commands one request may carry.
pub(crate) const MAX_COMMANDS: usize = 4096;
/// How much longer than the window a request's id is kept.
const FORGET_MARGIN_MICROS: i64 = 5_000_000;

/// Hands a command to this host's writer, to be taken no later than the instant given;
/// `None` once the writer is gone.
pub(crate) type Submit =
    Box<dyn Fn(Command, Instant) -> Option<Receiver<Result<(KeyId, u64), Error>>> + Send + Sync>;

/// Where answers to this host's own requests go (to its writer thread).
pub(crate) type Hear = Box<dyn Fn(Vec<u8>) + Send + Sync>;

/// A request taken: the answers it waits for, and where its answer goes.
struct Job {
    from: String,
    id: [u8; 16],
    replies: Vec<Receiver<Result<(KeyId, u64), Error>>>,
    answer: Answer,
}

/// The ids of the requests taken, with their times: kept until their time is out of the
/// window by this host's clock (and a margin), so a replay is refused for as long as its
/// time could pass.
#[derive(Default)]
struct Seen {
    ids: HashMap<[u8; 16], i64>,
    pruned_at: i64,
}

/// Why a request is refused: without an answer (not shown to be the fleet's, or a
/// replay), or with a sealed one (the fleet's, but not to be taken: its sender appends
/// itself at once rather than wait).
enum Refusal {
    Silent(String),
    Declined(Box<wire::RequestV1>, String),
}

/// The writer's side: takes requests on this host's writes subject.
pub(crate) struct Serving {
    fleet: Arc<Fleet>,
    chain: Chain,
    stream_id: [u8; 16],
    submit: Submit,
    hear: Hear,
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
        hear: Hear,
    ) -> Result<Self, Error> {
        let (jobs, taken) = crossbeam_channel::unbounded::<Job>();
        let answering = Arc::clone(&fleet);
        let sealing = chain.clone();
        std::thread::Builder::new()
            .name("keyledger-forward".into())
            .spawn(move || {
                for job in taken {
                    let outcomes: Vec<OutcomeV1> = job
                        .replies
                        .iter()
                        .map(|r| outcome(r.recv(), answering.halted()))
                        .collect();
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
                        (job.answer)(&job.from, bytes);
                    }
                }
            })?;
        Ok(Serving {
            fleet,
            chain,
            stream_id,
            submit,
            hear,
            seen: Mutex::new(Seen::default()),
            jobs,
        })
    }

    /// Checks a request: sealed for this stream and host, recent, new, for this run.
    /// Returns it and how long its sender waits.
    fn admit(&self, bytes: &[u8]) -> Result<(wire::RequestV1, Duration), Refusal> {
        let request = wire::open_request(bytes, &self.chain).map_err(Refusal::Silent)?;
        if request.stream_id != self.stream_id {
            return Err(Refusal::Silent(format!(
                "sealed for another stream, by {:?}",
                request.from
            )));
        }
        if request.to != self.fleet.host() {
            return Err(Refusal::Silent(format!(
                "sealed by {:?} for host {:?}, not this one",
                request.from, request.to
            )));
        }
        if !super::valid_host_id(&request.from) {
            return Err(Refusal::Silent(format!(
                "sealed by a host id no host has: {:?}",
                request.from
            )));
        }
        let now = crate::ledger::now_micros();
        let drift = now.saturating_sub(request.at);
        if drift.abs() > WINDOW_MICROS {
            return Err(Refusal::Silent(format!(
                "sent by {:?} {:.1} s from this host's clock: outside the {} s a request is taken in \
                 (replayed, or their clocks disagree)",
                request.from,
                drift as f64 / 1e6,
                WINDOW_MICROS / 1_000_000
            )));
        }
        {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Forgotten once its time is out of the window, by this host's clock.
            if now.saturating_sub(seen.pruned_at) > 1_000_000 {
                seen.ids
                    .retain(|_, at| now.saturating_sub(*at) <= WINDOW_MICROS + FORGET_MARGIN_MICROS);
                seen.pruned_at = now;
            }
            if seen.ids.insert(request.id, request.at).is_some() {
                return Err(Refusal::Silent(format!(
                    "a request of {:?} taken before, sent again (a replay)",
                    request.from
                )));
            }
        }
        if request.to_run != self.fleet.run() {
            let why = "sealed for an earlier run of this host (sent before it restarted)".to_owned();
            return Err(Refusal::Declined(Box::new(request), why));
        }
        if request.commands.len() > MAX_COMMANDS {
            let why = format!("{} commands, more than {MAX_COMMANDS}", request.commands.len());
            return Err(Refusal::Declined(Box::new(request), why));
        }
        let wait = Duration::from_millis(u64::from(request.wait_ms));
        Ok((request, wait))
    }

    /// Refuses request `id` of host `from`, the fleet's, for `why`: counted, and declined.
    fn refuse(&self, (from, id): (&str, [u8; 16]), why: String, answer: Answer) {
        self.fleet
            .routes
            .refused(format!("declined a request of {from:?}: {why}"));
        self.decline((from, id), why, answer);
    }

    /// Answers request `id` of host `from`: declined, nothing done.
    fn decline(&self, (from, id): (&str, [u8; 16]), why: String, answer: Answer) {
        let declined = AnswerV1 {
            stream_id: self.stream_id,
            from: self.fleet.host().to_owned(),
            id,
            answer: AnswerBodyV1::Declined(why),
        };
        if let Ok(bytes) = wire::seal_answer(&declined, &self.chain) {
            answer(from, bytes);
        }
    }
}

/// What a command's answer from this host's writer becomes for its sender. A writer that
/// halted may have appended what it then could not take: it cannot say "not written".
fn outcome(
    reply: Result<Result<(KeyId, u64), Error>, crossbeam_channel::RecvError>,
    halted: Option<String>,
) -> OutcomeV1 {
    match reply {
        Ok(Ok((id, seq))) => OutcomeV1::Done { id: id.0, seq },
        Ok(Err(_)) if let Some(reason) = halted => {
            OutcomeV1::Uncertain(format!("the fleet's writer halted: {reason}"))
        }
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

    fn request(&self, bytes: &[u8], answer: Answer) {
        let (request, wait) = match self.admit(bytes) {
            Ok(admitted) => admitted,
            Err(Refusal::Silent(why)) => return self.fleet.routes.refused(why),
            Err(Refusal::Declined(request, why)) => {
                return self.refuse((&request.from, request.id), why, answer);
            }
        };
        let (from, id, request_at) = (request.from, request.id, request.at);
        if let Some(reason) = self.fleet.halted() {
            return self.decline((&from, id), format!("it stopped writing: {reason}"), answer);
        }
        let commands: Result<Vec<Command>, String> =
            request.commands.into_iter().map(wire::command_of).collect();
        let commands = match commands {
            Ok(c) => c,
            Err(why) => {
                let why = format!("a command of {from:?} breaks the rules: {why}");
                return self.refuse((&from, id), why, answer);
            }
        };
        // Taken while the sender still waits, by its clock as this host reads it (a request
        // held up on the way, in a client's buffer across an outage, is not taken after
        // its sender gave up), with room for the append and the answer's way back.
        let waits_until = request_at.saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX));
        let left = waits_until.saturating_sub(crate::ledger::now_micros());
        let take_for = Duration::from_micros(u64::try_from(left).unwrap_or(0))
            .saturating_sub(wait.mul_f64(0.2))
            .min(wait.mul_f64(0.8));
        if take_for.is_zero() {
            let why = "it came after its sender stopped waiting".to_owned();
            return self.refuse((&from, id), why, answer);
        }
        let deadline = Instant::now() + take_for;
        let n = commands.len();
        let replies: Option<Vec<_>> = commands.into_iter().map(|c| (self.submit)(c, deadline)).collect();
        let Some(replies) = replies else {
            return;
        };
        self.fleet.routes.served(n);
        let _ = self.jobs.send(Job {
            from,
            id,
            replies,
            answer,
        });
    }

    fn answered(&self, bytes: Vec<u8>) {
        (self.hear)(bytes);
    }

    fn is_closing(&self) -> bool {
        self.fleet.is_closing()
    }
}

#[cfg(test)]
mod tests;
