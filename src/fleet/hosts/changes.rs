//! The fleet's state changes as log lines (`tracing`, target `keyledger::fleet`): joined,
//! lost the shared log, stale, fenced, caught up, halted, the stream faulted. Looked at
//! every heartbeat and when the fence opens or the host halts; each change is logged once.
//! Reasons are the library's own words, and never quote a key.

use std::time::Duration;

use super::{Fleet, lock};

/// What was last logged of this host's state.
#[derive(Default)]
pub(super) struct Logged {
    /// The fence opened once while the host was attached: it joined.
    joined: bool,
    /// Started without the shared log, and not joined yet.
    detached: bool,
    rejecting: bool,
    out_of_touch: bool,
    stale: bool,
    halted: bool,
    /// What kind of fault the stream had (its reason up to the first colon: deleted,
    /// replaced, rolled back, settings changed), so that a fault turning into another is
    /// logged, and one whose figures move is not logged again.
    stream_fault: Option<String>,
}

impl Fleet {
    /// Logs what changed since the last look.
    pub(super) fn log_changes(&self) {
        let stale_for = self.stale_for();
        let now = Logged {
            joined: true,
            detached: lock(&self.detached).is_some(),
            rejecting: self.fence.rejects(),
            out_of_touch: stale_for > Duration::ZERO,
            stale: stale_for > self.options.stale_serve,
            halted: lock(&self.halted).is_some(),
            stream_fault: self
                .stream
                .fault()
                .map(|reason| reason.split(':').next().unwrap_or_default().to_owned()),
        };
        let mut last = lock(&self.logged);
        let host = self.options.host.as_str();
        let secs = stale_for.as_secs_f64();
        if now.out_of_touch && !last.out_of_touch {
            tracing::warn!(target: "keyledger::fleet", host, "lost the shared log (NATS): no answer for {secs:.1} s");
        } else if !now.out_of_touch && last.out_of_touch {
            tracing::info!(target: "keyledger::fleet", host, "in touch with the shared log again");
        }
        if now.stale && !last.stale {
            tracing::warn!(
                target: "keyledger::fleet",
                host,
                "stale: the shared log has not answered for {secs:.1} s; /healthz answers 503"
            );
        }
        if now.detached {
            if now.rejecting && !last.rejecting {
                tracing::warn!(
                    target: "keyledger::fleet",
                    host,
                    "fenced: the fleet last heard it {secs:.1} s ago, past its limit; it rejects every key until \
                     it has joined and caught up"
                );
            }
        } else if !now.rejecting && (last.rejecting || !last.joined) {
            let what = if last.joined {
                "caught up"
            } else {
                "joined the fleet"
            };
            tracing::info!(target: "keyledger::fleet", host, "{what}: it verifies keys");
        } else if now.rejecting && !last.rejecting && last.joined {
            tracing::warn!(target: "keyledger::fleet", host, "fenced: it rejects every key until it has caught up");
        }
        if now.halted && !last.halted {
            let reason = lock(&self.halted).clone().unwrap_or_default();
            tracing::error!(target: "keyledger::fleet", host, "halted: it takes no more writes: {reason}");
        }
        match (&now.stream_fault, &last.stream_fault) {
            (Some(kind), before) if before.as_ref() != Some(kind) => {
                let reason = self.stream.fault().unwrap_or_default();
                tracing::error!(target: "keyledger::fleet", host, "the stream cannot be trusted: {reason}");
            }
            (None, Some(_)) => {
                tracing::info!(target: "keyledger::fleet", host, "the stream is the fleet's again");
            }
            _ => {}
        }
        // Joined only once the fence opened, attached.
        let joined = last.joined || (!now.rejecting && !now.detached);
        *last = Logged { joined, ..now };
    }
}
