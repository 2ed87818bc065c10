//! The fleet as the shared log sees it: [`Heads`], the host's side of the head exchange.
//! The log hands over what the server answered; the fleet decides what it means.

use std::time::Duration;

use super::hosts::Fleet;
use crate::log::Announcement;
use crate::log::Heads;
use crate::log::Outcome;

impl Heads for Fleet {
    fn host(&self) -> &str {
        Fleet::host(self)
    }

    /// The next head, sealed; a machine that was suspended meanwhile shuts the fence
    /// first. `None` once the host left, or before the stream is known.
    fn next_announcement(&self) -> Option<Announcement> {
        let head = self.next_head()?;
        self.check_suspend();
        let bytes = self.seal(&head)?;
        self.sending(head.counter);
        Some(Announcement {
            counter: head.counter,
            bytes,
        })
    }

    fn announced(&self, counter: u64, outcome: Outcome, sent: u64) -> bool {
        Fleet::announced(self, counter, outcome, sent)
    }

    fn catch_up_to(&self, end: u64) {
        Fleet::catch_up_to(self, end);
    }

    fn contact(&self) {
        Fleet::contact(self);
    }

    fn set_fault(&self, cause: &'static str, reason: String) {
        Fleet::set_fault(self, cause, reason);
    }

    fn clear_fault(&self, cause: &'static str) {
        Fleet::clear_fault(self, cause);
    }

    fn note_bucket_lost(&self) {
        Fleet::note_bucket_lost(self);
    }

    fn watch_started(&self) {
        Fleet::watch_started(self);
    }

    fn delivered(&self, key: &str, value: Option<&[u8]>, revision: u64, live: bool) {
        Fleet::delivered(self, key, value, revision, live);
    }

    fn is_closing(&self) -> bool {
        Fleet::is_closing(self)
    }

    fn wait_open(&self, timeout: Duration) {
        Fleet::wait_open(self, timeout);
    }
}
