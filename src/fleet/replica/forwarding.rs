//! The replica's side of forwarded writes (`fleet/forward.rs`): taking requests as the
//! fleet's writer, and sending a batch to the writer and waiting for this host to apply
//! what it appended.

use std::sync::Arc;
use std::time::Instant;

use super::Replica;
use crate::fleet::forward::{self, Hear, Serving, Submit, wire};
use crate::ledger::{Command, Ledger};
use crate::log::Log;
use crate::model::error::Error;

/// What became of a batch sent to the fleet's writer.
pub(crate) enum Forwarded {
    /// Not delivered, or declined before anything was done: this host appends it itself.
    No,
    /// Sent, and not answered: each command is wholly in the stream or wholly absent.
    Uncertain(String),
    /// Answered, one outcome per command, and the stream position the writer had applied:
    /// its callers are answered once this host has applied it too.
    Answered(Vec<wire::OutcomeV1>, u64),
}

/// Why a request got no answer.
pub(crate) enum Unanswered {
    /// The server said nobody takes requests on the writer's subject: nothing was
    /// delivered.
    Undelivered,
    /// No answer in time: the writer may have appended it.
    TimedOut,
}

impl Replica {
    /// Takes the writes other hosts forward to this one, handing each command to
    /// `submit` (this host's writer), and hands the answers to this host's own requests
    /// to `hear`.
    pub(crate) fn serve_writes(
        &mut self,
        chain: crate::chain::Chain,
        submit: Submit,
        hear: Hear,
    ) -> Result<(), Error> {
        let serving = Serving::start(
            Arc::clone(&self.fleet),
            chain,
            self.identity.stream_id,
            submit,
            hear,
        )?;
        self.shared.serve_writes(Arc::new(serving))?;
        Ok(())
    }

    /// Sends `commands` to the fleet's writer, if there is one other than this host and it
    /// is not being avoided, without waiting: its answer comes through the hearing given
    /// to [`Replica::serve_writes`], and `undelivered` is called if the server says nobody
    /// took it. `None`: not sent, this host appends them itself.
    pub(crate) fn send(
        &mut self,
        ledger: &Ledger,
        commands: &[&Command],
        undelivered: Box<dyn FnOnce() + Send>,
    ) -> Option<Sent> {
        let (writer, run) = self.fleet.write_leader()?;
        if self.fleet.routes.backing_off(&writer) || commands.len() > forward::MAX_COMMANDS {
            return None;
        }
        let wire_commands = commands
            .iter()
            .map(|c| wire::command_v1(c))
            .collect::<Option<Vec<_>>>()?;
        let wait = self.fleet.options.request_timeout;
        let request = wire::RequestV1 {
            stream_id: self.identity.stream_id,
            from: self.fleet.host().to_owned(),
            to: writer.clone(),
            to_run: run,
            id: rand::random(),
            at: crate::ledger::now_micros(),
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            commands: wire_commands,
        };
        let bytes = wire::seal_request(&request, ledger.chain()).ok()?;
        if bytes.len() > self.shared.max_message_bytes() {
            return None;
        }
        self.shared.forward(&writer, bytes, undelivered);
        Some(Sent {
            writer,
            id: request.id,
            commands: commands.len(),
            deadline: Instant::now() + wait,
        })
    }

    /// An answer heard on this host's answers subject, if it is one: sealed with the
    /// fleet's key for this stream (anyone may publish there).
    pub(crate) fn open_answer(&self, ledger: &Ledger, bytes: &[u8]) -> Option<wire::AnswerV1> {
        wire::open_answer(bytes, ledger.chain())
            .ok()
            .filter(|a| a.stream_id == self.identity.stream_id)
    }

    /// What the writer's answer to request `sent` says, or its absence.
    pub(crate) fn answered(&mut self, sent: &Sent, answer: Result<wire::AnswerV1, Unanswered>) -> Forwarded {
        let writer = &sent.writer;
        match answer {
            Err(Unanswered::Undelivered) => {
                self.fleet.routes.back_off(writer);
                Forwarded::No
            }
            Err(Unanswered::TimedOut) => {
                self.fleet.routes.back_off(writer);
                Forwarded::Uncertain(format!(
                    "the fleet's writer {writer} did not answer in time; the write is wholly in the \
                     stream or wholly absent"
                ))
            }
            Ok(a) if a.from != *writer => {
                self.fleet.routes.back_off(writer);
                Forwarded::Uncertain(format!(
                    "the answer came from {:?}, not the fleet's writer {writer}; the write is wholly \
                     in the stream or wholly absent",
                    a.from
                ))
            }
            Ok(wire::AnswerV1 {
                answer: wire::AnswerBodyV1::Taken { position, outcomes },
                ..
            }) if outcomes.len() == sent.commands => {
                self.fleet.contact();
                self.fleet.routes.forwarded(outcomes.len());
                if outcomes
                    .iter()
                    .any(|o| matches!(o, wire::OutcomeV1::Uncertain(_)))
                {
                    self.fleet.routes.back_off(writer);
                }
                Forwarded::Answered(outcomes, position)
            }
            Ok(wire::AnswerV1 {
                answer: wire::AnswerBodyV1::Declined(_),
                ..
            }) => {
                self.fleet.routes.back_off(writer);
                Forwarded::No
            }
            Ok(_) => {
                self.fleet.routes.back_off(writer);
                Forwarded::Uncertain(format!(
                    "the fleet's writer {writer} answered for another number of commands; the write is \
                     wholly in the stream or wholly absent"
                ))
            }
        }
    }

    /// The position of the last stream message applied.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// Applies the stream up to `position` now, reading what was not delivered. What
    /// fails is this host's to report (halted, or the stream out of reach).
    pub(crate) fn apply_through(&mut self, log: &mut dyn Log, ledger: &Ledger, position: u64) {
        if self.fleet.halted().is_none() {
            let _ = self.catch_up(log, ledger, position);
        }
    }
}

/// A request sent to the fleet's writer, until its answer comes.
pub(crate) struct Sent {
    writer: String,
    pub(crate) id: [u8; 16],
    commands: usize,
    /// Unanswered by then, it is taken as lost (the writer may have appended it).
    pub(crate) deadline: Instant,
}
