//! The fleet as this host sees it ([`FleetStatus`]): its own head and staleness, every
//! host heard from, and each cause of ill health with a sentence. Reads the fleet's state;
//! changes nothing.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Fleet, HostHead, lock};
use crate::fleet::{FleetStatus, HostStatus};

impl Fleet {
    /// The fleet as this host sees it; `hash_at` gives this host's chain hash of a record.
    pub(crate) fn status(&self, hash_at: impl Fn(u64) -> Option<[u8; 32]>) -> FleetStatus {
        let own = lock(&self.own).head;
        let stale = self.stale_for();
        let halted = self.halted();
        let rejecting = self.fence.rejects();
        let mut hosts = vec![HostStatus {
            host: self.options.host.clone(),
            this_host: true,
            seq: own.seq,
            position: own.position,
            lag: 0,
            heard: Duration::ZERO,
            live: true,
            stale_for: stale,
            halted: halted.is_some(),
            diverged: false,
            fences: own.fences,
        }];
        let now = Instant::now();
        // Copied out first: `hash_at` reads the log, which the view's lock must not wait for.
        let (peers, ignored, last_ignored): (Vec<(String, HostHead, Instant)>, _, _) = {
            let view = lock(&self.view);
            (
                view.peers
                    .iter()
                    .map(|(h, p)| (h.clone(), p.head, p.heard))
                    .collect(),
                view.ignored,
                view.last_ignored.clone(),
            )
        };
        let mut others: Vec<HostStatus> = peers
            .into_iter()
            .map(|(host, head, heard)| HostStatus {
                host,
                this_host: false,
                seq: head.seq,
                position: head.position,
                lag: own.seq.saturating_sub(head.seq),
                heard: now.duration_since(heard),
                live: now.duration_since(heard) <= Duration::from_micros(head.lease),
                stale_for: Duration::from_micros(head.stale_for),
                halted: head.halted,
                diverged: head.seq > 0
                    && head.seq <= own.seq
                    && hash_at(head.seq).is_some_and(|h| h != head.hash),
                fences: head.fences,
            })
            .collect();
        others.sort_by(|a, b| a.host.cmp(&b.host));
        hosts.extend(others);
        let mut causes = Vec::new();
        if let Some(reason) = &halted {
            causes.push(("halted", reason.clone()));
        }
        let detached = lock(&self.detached).clone();
        if let Some(d) = &detached {
            causes.push(("stale", d.reason(stale)));
        } else if stale > self.options.stale_serve {
            causes.push((
                "stale",
                format!("the shared log has not answered for {:.1} s", stale.as_secs_f64()),
            ));
        }
        if rejecting {
            let reason = if let Some(d) = &detached {
                d.fenced(stale)
            } else if self.fence.lapsed() {
                format!(
                    "no announcement of this host was acknowledged for {:.1} s (its limit is {:.1} s): \
                     it rejects every key",
                    self.fence.unheard_for().as_secs_f64(),
                    self.options.fence_limit().as_secs_f64()
                )
            } else {
                "starting, in touch again after a lapse, or resumed from a suspend: it rejects every key \
                 until it is heard and has applied the stream's end"
                    .to_owned()
            };
            causes.push(("fenced", reason));
        }
        if let Some((have, until)) = self.bootstrapping() {
            causes.push((
                "bootstrapping",
                format!("the stream's bootstrap reaches record {until}; this host has {have}"),
            ));
        }
        let stream_fault = self.stream.fault();
        if let Some(reason) = &stream_fault {
            causes.push(("stream", reason.clone()));
        }
        causes.extend(lock(&self.faults).iter().map(|(c, r)| (*c, r.clone())));
        let (foreign_messages, last_foreign) = self.stream.foreign_seen();
        FleetStatus {
            host: self.options.host.clone(),
            stream: self.options.stream.clone(),
            stream_id: self
                .stream_id()
                .map(|id| crate::fleet::message::hex(&id))
                .unwrap_or_default(),
            stale_for: stale,
            unhealthy: !causes.is_empty(),
            rejecting,
            halted,
            stream_fault,
            foreign_messages,
            last_foreign,
            hosts,
            causes,
            ignored_heads: ignored,
            last_ignored,
            heads_bucket_lost: self.bucket_lost.load(Ordering::Acquire),
            usage: lock(&self.usage).clone().unwrap_or_default(),
            writes: self.routes.status(
                self.write_leader()
                    .map(|(w, _)| w)
                    .filter(|w| !self.routes.backing_off(w))
                    .unwrap_or_else(|| self.options.host.clone()),
            ),
        }
    }
}
