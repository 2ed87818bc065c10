//! The probes an orchestrator asks (Kubernetes' liveness and readiness): `/livez`, 200
//! whenever the process answers, and `/readyz`, 200 only while this host should get
//! traffic. `/healthz` stays the load balancers' check; `/readyz` decides from the same
//! state and is stricter: a host of a fleet out of touch with the shared log, or not
//! caught up, is not ready even before `/healthz` turns 503.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;

use super::{CauseJson, Health, Shared, body, causes};
use crate::fleet::FleetStatus;

/// `/livez`'s and `/readyz`'s answer.
#[derive(serde::Serialize)]
struct Probe {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    last_seq: u64,
    /// On a host of a fleet that is not ready: every cause, with the library's words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<CauseJson>,
}

/// `GET /livez`: 200 `{"status":"live","last_seq":N}` while the process serves, whatever
/// the store's state (restarting would not mend a damaged history or bring NATS back).
pub(super) async fn live(State(shared): State<Arc<Shared>>) -> Response {
    let answer = Probe {
        status: "live",
        reason: None,
        last_seq: shared.store().last_seq(),
        causes: Vec::new(),
    };
    body::json(StatusCode::OK, &answer)
}

/// `GET /readyz`: 200 `{"status":"ready","last_seq":N}` while the store is open and not
/// damaged and, on a host of a fleet, not halted, in touch with the shared log and caught
/// up; else 503 `{"status":"not_ready","reason":R,...}` with `/healthz`'s reasons
/// (`closed`, `damaged`, `halted`, `stale`, `fenced`, `bootstrapping`, `stream`, ...) or
/// `stale` for a host out of touch for more than two heartbeats.
pub(super) async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.store();
    let fleet = store.fleet_status();
    let last_seq = store.last_seq();
    let (_, health) = Health::of(last_seq, store.is_closed(), &store.integrity(), fleet.as_ref());
    let reason = not_ready(health.reason, fleet.as_ref());
    let (status, answer) = match reason {
        None => (
            StatusCode::OK,
            Probe {
                status: "ready",
                reason: None,
                last_seq,
                causes: Vec::new(),
            },
        ),
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Probe {
                status: "not_ready",
                reason,
                last_seq,
                causes: fleet.as_ref().map(causes).unwrap_or_default(),
            },
        ),
    };
    body::json(status, &answer)
}

/// Why this host is not ready: `/healthz`'s reason, or on a fleet host one that still
/// serves but is out of touch (the fence may soon close) or rejecting every key.
fn not_ready(health: Option<&'static str>, fleet: Option<&FleetStatus>) -> Option<&'static str> {
    health.or_else(|| {
        let f = fleet?;
        if f.rejecting {
            Some("fenced")
        } else if !f.stale_for.is_zero() {
            Some("stale")
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fleet(stale_for: Duration, rejecting: bool) -> FleetStatus {
        FleetStatus {
            host: "a".into(),
            stream: "keyledger".into(),
            stream_id: String::new(),
            stale_for,
            unhealthy: false,
            rejecting,
            halted: None,
            stream_fault: None,
            foreign_messages: 0,
            last_foreign: None,
            hosts: Vec::new(),
            causes: Vec::new(),
            ignored_heads: 0,
            last_ignored: None,
            heads_bucket_lost: 0,
            usage: crate::fleet::UsageStatus::default(),
            writes: crate::fleet::route::Routes::default().status("a".into()),
        }
    }

    #[test]
    fn a_fleet_host_out_of_touch_or_fenced_is_not_ready_before_it_is_unhealthy() {
        let in_touch = fleet(Duration::ZERO, false);
        assert_eq!(not_ready(None, None), None, "a single host, healthy");
        assert_eq!(not_ready(Some("damaged"), None), Some("damaged"));
        assert_eq!(not_ready(Some("closed"), Some(&in_touch)), Some("closed"));
        assert_eq!(not_ready(None, Some(&in_touch)), None);
        let silent = fleet(Duration::from_millis(300), false);
        assert_eq!(not_ready(None, Some(&silent)), Some("stale"));
        let catching_up = fleet(Duration::ZERO, true);
        assert_eq!(not_ready(None, Some(&catching_up)), Some("fenced"));
        assert_eq!(not_ready(Some("halted"), Some(&catching_up)), Some("halted"));
    }
}
