//! The replica's side of forwarded writes (`fleet/forward.rs`): taking requests as the
//! fleet's writer, and sending a batch to the writer and waiting for this host to apply
//! what it appended.

use std::sync::Arc;

use super::Replica;
use crate::fleet::forward::{self, Serving, Submit, wire};
use crate::ledger::{Command, Ledger};
use crate::log::{Answered, ForwardError, Log};
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

impl Replica {
    /// Takes the writes other hosts forward to this one, handing each command to
    /// `submit` (this host's writer).
    pub(crate) fn serve_writes(&mut self, chain: crate::chain::Chain, submit: Submit) -> Result<(), Error> {
        let serving = Serving::start(Arc::clone(&self.fleet), chain, self.identity.stream_id, submit)?;
        self.shared.serve_writes(Arc::new(serving))?;
        Ok(())
    }

    /// Sends `commands` to the fleet's writer, if there is one other than this host and it
    /// is not being avoided, without waiting: `done` gets the answer. `None`: not sent,
    /// this host appends them itself.
    pub(crate) fn send(&mut self, ledger: &Ledger, commands: &[&Command], done: Answered) -> Option<Sent> {
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
        self.shared.forward(&writer, bytes, wait, done);
        Some(Sent {
            writer,
            id: request.id,
            commands: commands.len(),
        })
    }

    /// What the writer's `answer` to request `sent` says.
    pub(crate) fn answered(
        &mut self,
        ledger: &Ledger,
        sent: &Sent,
        answer: Result<Vec<u8>, ForwardError>,
    ) -> Forwarded {
        let writer = &sent.writer;
        let answer = match answer {
            Ok(answer) => answer,
            Err(ForwardError::NotDelivered) => {
                self.fleet.routes.back_off(writer);
                return Forwarded::No;
            }
            Err(ForwardError::Unanswered(why)) => {
                self.fleet.routes.back_off(writer);
                return Forwarded::Uncertain(format!(
                    "the fleet's writer {writer} did not answer ({why}); the write is wholly in the \
                     stream or wholly absent"
                ));
            }
        };
        let opened = wire::open_answer(&answer, ledger.chain()).and_then(|a| {
            if a.id != sent.id || a.from != *writer || a.stream_id != self.identity.stream_id {
                Err("it answers another request".to_owned())
            } else {
                Ok(a.answer)
            }
        });
        match opened {
            Ok(wire::AnswerBodyV1::Taken { position, outcomes }) if outcomes.len() == sent.commands => {
                self.fleet.contact();
                self.fleet.routes.forwarded(outcomes.len());
                Forwarded::Answered(outcomes, position)
            }
            Ok(wire::AnswerBodyV1::Declined(_)) => {
                self.fleet.routes.back_off(writer);
                Forwarded::No
            }
            Ok(wire::AnswerBodyV1::Taken { .. }) => {
                self.fleet.routes.back_off(writer);
                Forwarded::Uncertain(format!(
                    "the fleet's writer {writer} answered for another number of commands; the write is \
                     wholly in the stream or wholly absent"
                ))
            }
            Err(why) => {
                self.fleet.routes.back_off(writer);
                Forwarded::Uncertain(format!(
                    "the answer of the fleet's writer {writer} does not verify ({why}); the write is \
                     wholly in the stream or wholly absent"
                ))
            }
        }
    }
}

impl Replica {
    /// The position of the last stream message applied.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// Applies the stream up to `position` now, reading what was not delivered. What
    /// fails is this host's to report (halted, or the stream out of reach).
    pub(crate) fn apply_through(&mut self, log: &mut dyn Log, ledger: &Ledger, position: u64) {
        let _ = self.catch_up(log, ledger, position);
    }
}

/// A request sent to the fleet's writer, until its answer comes.
pub(crate) struct Sent {
    writer: String,
    id: [u8; 16],
    commands: usize,
}
