//! `KEYLEDGER_BENCH_TRACE=1`: the `auth` and `creates` phases print the store's own log
//! lines (snapshots begun and saved, writer stalls) and every verify of a probe thread (one
//! every 2 ms, in-process, no HTTP) that took longer than 20 ms, and `creates` every create
//! that took longer than 100 ms, each with the time since the phase began, so that a stall
//! can be placed against what the store was doing.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keyledger::KeyStore;

/// A verify slower than this is printed.
const SLOW: Duration = Duration::from_millis(20);

/// Whether the run asked for the trace.
pub(crate) fn wanted() -> bool {
    std::env::var_os("KEYLEDGER_BENCH_TRACE").is_some_and(|v| v == "1")
}

/// Prints the store's log lines at `info` and above (keyledger's targets only), with the
/// time since the process started.
pub(crate) fn install_subscriber() {
    let filter = tracing_subscriber::EnvFilter::new("keyledger=info");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_writer(std::io::stderr)
        .init();
}

/// A thread verifying `secret` every 2 ms until the returned flag is set, printing each
/// verify slower than [`SLOW`].
pub(crate) fn probe(
    store: Arc<KeyStore>,
    secret: String,
    client: IpAddr,
) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let started = Instant::now();
    let handle = std::thread::spawn(move || {
        while !flag.load(Ordering::Acquire) {
            let t = Instant::now();
            let ok = store.verify(&secret, client).is_ok();
            let took = t.elapsed();
            if took > SLOW {
                eprintln!(
                    "  probe: a verify ({}) took {took:.1?}, ending {:.3?} into the phase",
                    if ok { "hit" } else { "refused" },
                    started.elapsed()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    (stop, handle)
}

/// Prints a create asked at `asked` that took longer than 100 ms, when `traced`.
pub(crate) fn slow_create(traced: bool, asked: Instant, started: Instant) {
    let took = asked.elapsed();
    if traced && took > Duration::from_millis(100) {
        eprintln!(
            "  a create took {took:.1?}, ending {:.3?} into the phase",
            started.elapsed()
        );
    }
}
