//! The replica's side of forwarded writes (`fleet/forward.rs`): taking requests as the
//! fleet's writer, and sending a batch to the writer and waiting for this host to apply
//! what it appended.

use std::sync::Arc;

use super::Replica;
use crate::fleet::forward::{self, Serving, Submit, wire};
use crate::ledger::{Command, Ledger};
use crate::log::{ForwardError, Log};
use crate::model::error::Error;

/// What became of a batch offered to the fleet's writer.
pub(crate) enum Forwarded {
    /// Not sent, or refused before anything was done: this host appends it itself.
    No,
    /// Sent, and not answered: each command is wholly in the stream or wholly absent.
    Uncertain(String),
    /// Answered, one outcome per command; what the writer appended is applied here.
    Answered(Vec<wire::OutcomeV1>),
}

impl Replica {
    /// Takes the writes other hosts forward to this one, handing each command to
    /// `submit` (this host's writer).
    pub(crate) fn serve_writes(&mut self, chain: crate::chain::Chain, submit: Submit) -> Result<(), Error> {
        let serving = Serving::start(Arc::clone(&self.fleet), chain, self.identity.stream_id, submit)?;
        self.shared.serve_writes(Arc::new(serving))?;
        Ok(())
    }

    /// Sends `commands` to the fleet's writer, if there is one other than this host and
    /// it can be reached, and waits for its answer and for this host to apply what it
    /// appended (so that a key created through this host verifies here at once).
    pub(crate) fn forward(&mut self, log: &mut dyn Log, ledger: &Ledger, commands: &[&Command]) -> Forwarded {
        let Some((writer, run)) = self.fleet.write_leader() else {
            return Forwarded::No;
        };
        if self.fleet.routes.backing_off(&writer) {
            return Forwarded::No;
        }
        let Some(wire_commands) = commands
            .iter()
            .map(|c| wire::command_v1(c))
            .collect::<Option<Vec<_>>>()
        else {
            return Forwarded::No;
        };
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
        let Ok(bytes) = wire::seal_request(&request, ledger.chain()) else {
            return Forwarded::No;
        };
        if bytes.len() > self.shared.max_message_bytes() || commands.len() > forward::MAX_COMMANDS {
            return Forwarded::No;
        }
        let answer = match self.shared.forward(&writer, &bytes, wait) {
            Ok(answer) => answer,
            Err(ForwardError::NotDelivered) => {
                self.fleet.routes.back_off(&writer);
                return Forwarded::No;
            }
            Err(ForwardError::Unanswered(why)) => {
                self.fleet.routes.back_off(&writer);
                return Forwarded::Uncertain(format!(
                    "the fleet's writer {writer} did not answer ({why}); the write is wholly in the \
                     stream or wholly absent"
                ));
            }
        };
        let opened = wire::open_answer(&answer, ledger.chain()).and_then(|a| {
            if a.id != request.id || a.from != writer || a.stream_id != request.stream_id {
                Err("it answers another request".to_owned())
            } else {
                Ok(a.answer)
            }
        });
        match opened {
            Ok(wire::AnswerBodyV1::Taken { position, outcomes }) if outcomes.len() == commands.len() => {
                self.fleet.contact();
                self.fleet.routes.forwarded(outcomes.len());
                // What failed here is this host's to report (halted, or the stream out of
                // reach): the writes are in the shared log either way.
                let _ = self.catch_up(log, ledger, position);
                Forwarded::Answered(outcomes)
            }
            Ok(wire::AnswerBodyV1::Declined(_)) => {
                self.fleet.routes.back_off(&writer);
                Forwarded::No
            }
            Ok(wire::AnswerBodyV1::Taken { .. }) => {
                self.fleet.routes.back_off(&writer);
                Forwarded::Uncertain(format!(
                    "the fleet's writer {writer} answered for another number of commands; the write is \
                     wholly in the stream or wholly absent"
                ))
            }
            Err(why) => {
                self.fleet.routes.back_off(&writer);
                Forwarded::Uncertain(format!(
                    "the answer of the fleet's writer {writer} does not verify ({why}); the write is \
                     wholly in the stream or wholly absent"
                ))
            }
        }
    }
}
