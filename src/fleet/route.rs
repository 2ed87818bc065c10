//! How this host's writes go: to the fleet's writer or appended here, with the counts
//! the status reports. Which host writes is decided in `fleet/hosts.rs`
//! ([`super::Fleet::write_leader`]); the requests themselves are `fleet/forward.rs`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::WriteRoutes;

/// How long a host appends its own batches after the writer it forwards to could not be
/// reached: a few heartbeats, so that a dead writer costs one wait, not one per batch,
/// and a live one is tried again soon.
pub(crate) const BACK_OFF: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(crate) struct Routes {
    forwarded: AtomicU64,
    served: AtomicU64,
    fallbacks: AtomicU64,
    refused: AtomicU64,
    last_refused: Mutex<Option<String>>,
    /// The writer not to forward to, until when.
    backing_off: Mutex<Option<(String, Instant)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Routes {
    /// `n` commands were forwarded and answered.
    pub(crate) fn forwarded(&self, n: usize) {
        self.forwarded.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` commands forwarded by other hosts were taken.
    pub(crate) fn served(&self, n: usize) {
        self.served.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A request on this host's writes subject was refused, for `why`.
    pub(crate) fn refused(&self, why: String) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_refused) = Some(why);
    }

    /// `writer` could not be reached: this host appends its own batches for a while.
    pub(crate) fn back_off(&self, writer: &str) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        *lock(&self.backing_off) = Some((writer.to_owned(), Instant::now() + BACK_OFF));
    }

    /// Whether this host appends its own batches rather than forward them to `writer`.
    pub(crate) fn backing_off(&self, writer: &str) -> bool {
        lock(&self.backing_off)
            .as_ref()
            .is_some_and(|(w, until)| w == writer && Instant::now() < *until)
    }

    pub(crate) fn status(&self, writer: String) -> WriteRoutes {
        WriteRoutes {
            writer,
            forwarded: self.forwarded.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            refused_requests: self.refused.load(Ordering::Relaxed),
            last_refused: lock(&self.last_refused).clone(),
        }
    }
}
