//! Saving what credited keys spent: the counts live in memory (spending is not a record),
//! so a thread writes them beside the log every `save_credits_every` (a second by
//! default) and at close, and the store reads them back when it opens. What a crash can
//! cost is what was spent since the last save: see `docs/design.md`, "Credits".

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::background::Saver;
use crate::file;
use crate::ledger::Ledger;
use crate::model::error::Error;
use crate::persist::credits::{MAX_CREDITS_BYTES, decode_credits, encode_credits};
use crate::projection::credits::SavedCredits;

/// The credited keys' counts, outside the log.
pub(super) const CREDITS_FILE: &str = "credits";

/// The counts as last written, and where.
pub(super) struct CreditCounts {
    path: PathBuf,
    every: Duration,
    saved: Vec<SavedCredits>,
}

impl CreditCounts {
    /// Loads the saved counts into the state (each applies only to the setting it was
    /// spent from). A missing, unreadable or damaged file costs what was spent (the counts
    /// start again from what the log set); a link or anything but a regular file was
    /// planted, and is refused.
    pub(super) fn load(path: PathBuf, ledger: &Ledger, every: Duration) -> Result<Self, Error> {
        let saved = match file::read_store_file(&path, MAX_CREDITS_BYTES + 32) {
            Err(e @ Error::UnsafeFile { .. }) => return Err(e),
            read => read
                .ok()
                .flatten()
                .and_then(|bytes| decode_credits(&bytes).ok())
                .unwrap_or_default(),
        };
        ledger.read().restore_saved_credits(&saved);
        Ok(CreditCounts { path, every, saved })
    }

    /// Saves every `every` until the store closes, then once more.
    pub(super) fn spawn(mut self, ledger: Arc<Ledger>) -> Result<Saver, Error> {
        let every = self.every;
        Saver::spawn("keyledger-credits", every, move || self.save(&ledger))
    }

    /// Saves the counts if they changed.
    fn save(&mut self, ledger: &Ledger) {
        let current = ledger.read().saved_credits();
        if current == self.saved {
            return;
        }
        let written = encode_credits(&current).and_then(|bytes| {
            file::write_atomically(&self.path, |out| Ok(std::io::Write::write_all(out, &bytes)?))
        });
        // A failure only widens what a crash could cost; the next period tries again.
        if written.is_ok() {
            self.saved = current;
        }
    }
}
