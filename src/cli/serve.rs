//! `keyledger serve`: opens the store, runs the library's `Server` on it until SIGTERM or
//! SIGINT, then closes the store.
//!
//! Prints `listening on ADDR` once the socket is bound (so `--listen 127.0.0.1:0` can be
//! used), then `metrics listening on ADDR` for `--metrics-listen`; everything else is a
//! log line on standard error (`cli/logging.rs`): warnings, the library's lines, the
//! server's decision lines, on a host of a fleet what it skipped from the stream. It never
//! prints a key.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use keyledger::{IpNet, ProxyAdmins, Server, TrustedProxies};

use super::args::net_arg;
use super::{Failure, Store, exit};

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Read settings from this TOML file: serve's flags as keys, without their dashes
    /// (`listen = "127.0.0.1:8080"`, `trusted-proxy = ["127.0.0.2"]`, `opaque-refusals =
    /// true`); a flag on the command line or from the environment wins over its key
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Print the settings in force (command line, environment, --config and defaults) as
    /// TOML that --config reads, secrets redacted, and exit without opening the store
    #[arg(long)]
    print_config: bool,
    /// The address to listen on, e.g. 127.0.0.1:8080; port 0 picks a free one (printed at start)
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// A reverse proxy's address or network (repeat for more): behind it, the client is the
    /// rightmost X-Forwarded-For address that is not a trusted proxy
    #[arg(long = "trusted-proxy", value_name = "NET", value_parser = net_arg)]
    trusted_proxies: Vec<IpNet>,
    /// Seconds a client may take to send a request's headers or its body, or to take each
    /// part of the answer; idle connections close after it too
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    read_timeout: u64,
    /// Most connections open at once; more wait in the system's backlog
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Most connections one client may hold at once (an IPv6 client counted by its /64);
    /// trusted proxies are not capped. More are answered 503 and closed at once
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_client: u32,
    /// Connection slots kept for the trusted proxies, which other clients may not take
    /// [default: a quarter of --max-connections with --trusted-proxy, else 0]
    #[arg(long, value_name = "N", requires = "trusted_proxies")]
    proxy_connections: Option<u32>,
    /// Answer every refused key 401 "unauthorized", whatever the reason, so that a
    /// refusal tells a client nothing (not even that a stolen key is live)
    #[arg(long)]
    opaque_refusals: bool,
    /// The header in which a proxy names the admin it signed in (e.g. X-Forwarded-User):
    /// the admins' page and the admin API then work without an admin key, as that person;
    /// believed from --admin-proxy connections only
    #[arg(long, value_name = "HEADER", requires_all = ["admin_proxies", "admin_users"])]
    admin_user_header: Option<String>,
    /// The address the proxy that names admins connects from (one address, not a network;
    /// repeat for more)
    #[arg(long = "admin-proxy", value_name = "ADDR", requires = "admin_user_header")]
    admin_proxies: Vec<String>,
    /// NAME=ROLE: a person the proxy may name, and their role, admin or super-admin (repeat
    /// for more); anyone else it names is refused
    #[arg(long = "admin-user", value_name = "NAME=ROLE", requires = "admin_user_header")]
    admin_users: Vec<String>,
    /// Also serve GET /metrics (Prometheus text format) on this address, a listener of its
    /// own that only monitoring should reach; /metrics is never on --listen. Off by default
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    log: super::logging::LogArgs,
    #[cfg(feature = "nats")]
    #[command(flatten)]
    fleet: super::fleet::FleetArgs,
}

/// How long stopping waits for store calls still running after the requests in flight
/// were given their time.
const BLOCKING_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

const NOT_LOOPBACK: &str = "\
the admin API takes admin keys in the clear: serve it on loopback, or keep it behind a \
proxy that terminates TLS and does not route /v1 from outside";

impl ServeArgs {
    /// Whether `--print-config` asks for the settings instead of a server.
    pub(super) fn prints_config(&self) -> bool {
        self.print_config
    }
}

pub(super) fn run(store: &Store, args: ServeArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let proxies = TrustedProxies::new(args.trusted_proxies)?;
    let admins = match &args.admin_user_header {
        Some(header) => {
            let admins = args
                .admin_proxies
                .iter()
                .try_fold(ProxyAdmins::new(header)?, |admins, addr| admins.proxy_from(addr))?;
            Some(
                args.admin_users
                    .iter()
                    .try_fold(admins, |admins, pair| admins.user_from(pair))?,
            )
        }
        None => None,
    };
    if args.proxy_connections.is_some_and(|n| n >= args.max_connections) {
        return Err(Failure::new(
            exit::USAGE,
            "--proxy-connections must leave other clients at least one of --max-connections",
        ));
    }
    args.log.install()?;
    if let Some(file) = &args.config {
        tracing::info!("settings from {}", file.display());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("keyledger-serve")
        .build()
        .map_err(|e| Failure::new(exit::STORAGE, format!("cannot start the server's threads: {e}")))?;
    // Without a metrics listener nobody reads the counts: the store keeps none.
    let counted = args.metrics_listen.is_some();
    #[cfg(feature = "nats")]
    let keys = match args.fleet.options()? {
        // A new host starts from an empty directory and catches up from the shared log.
        Some(fleet) => store.open_with(true, |b| b.fleet(fleet).statistics(counted))?,
        None => store.open_with(false, |b| b.statistics(counted))?,
    };
    #[cfg(not(feature = "nats"))]
    let keys = store.open_with(false, |b| b.statistics(counted))?;
    let keys = Arc::new(keys);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(args.listen))
        .map_err(|e| Failure::new(exit::STORAGE, format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr()?;
    let metrics_listener = args
        .metrics_listen
        .map(|at| {
            runtime
                .block_on(tokio::net::TcpListener::bind(at))
                .map_err(|e| Failure::new(exit::STORAGE, format!("cannot listen on {at} for metrics: {e}")))
        })
        .transpose()?;
    // Handlers first: a signal that arrives once the address is printed must stop the
    // server gracefully, not kill it.
    let stop = {
        let _inside = runtime.enter();
        stop_signals()?
    };
    if !addr.ip().is_loopback() {
        tracing::warn!("listening on {addr}, not a loopback address: {NOT_LOOPBACK}");
    }
    writeln!(out, "listening on {addr}")?;
    if let Some(metrics) = &metrics_listener {
        writeln!(out, "metrics listening on {}", metrics.local_addr()?)?;
    }
    out.flush()?;
    #[cfg(feature = "nats")]
    runtime.spawn(report_fleet(Arc::clone(&keys)));
    let server = Server::new(Arc::clone(&keys))
        .trusted_proxies(proxies)
        .read_timeout(std::time::Duration::from_secs(args.read_timeout))
        .max_connections(args.max_connections as usize)
        .max_connections_per_client(args.max_connections_per_client as usize)
        .opaque_refusals(args.opaque_refusals)
        .log_auth(args.log.auth());
    let server = match args.proxy_connections {
        Some(n) => server.proxy_connections(n as usize),
        None => server,
    };
    let server = match admins {
        Some(admins) => server.proxy_admins(admins),
        None => server,
    };
    // Both listeners stop on the same signal.
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    if let Some(metrics) = metrics_listener {
        runtime.spawn(server.metrics().run(metrics, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
    }
    runtime.block_on(server.run(listener, async move {
        stop.await;
        let _ = stopping.send(true);
    }));
    // Waits for store calls still running on the blocking pool (their writes are durable
    // either way, and the store must outlive them), but not for ever: a store call still
    // running after that keeps its reference, and the store is then not closed here (its
    // acknowledged writes are durable; only the last-used stamps of the last minute and a
    // snapshot due at close are lost).
    runtime.shutdown_timeout(BLOCKING_PATIENCE);
    // The last reference: the store saves its last-used stamps and a due snapshot, and
    // lets go of its lock.
    drop(keys);
    writeln!(out, "stopped")?;
    Ok(exit::OK)
}

/// On a host of a fleet: a log line whenever it turns unhealthy for a cause the library
/// does not log itself, or healthy again, and whenever stream messages were skipped or
/// heads-bucket entries counted for nothing.
#[cfg(feature = "nats")]
async fn report_fleet(keys: Arc<keyledger::KeyStore>) {
    let mut skipped = 0;
    let mut ignored = 0;
    let mut lost = 0;
    let mut causes: Vec<(&str, String)> = Vec::new();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let Some(status) = keys.fleet_status() else { return };
        if status.foreign_messages > skipped {
            // What another NATS client published is theirs to choose: redacted.
            let why = keyledger::redact_keys(status.last_foreign.as_deref().unwrap_or_default());
            tracing::warn!(
                target: "keyledger::fleet",
                "skipped {} stream message(s) that are not the fleet's ({} since start); the last: {why}",
                status.foreign_messages - skipped,
                status.foreign_messages
            );
            skipped = status.foreign_messages;
        }
        if status.ignored_heads > ignored {
            ignored = status.ignored_heads;
            if let Some(last) = &status.last_ignored {
                tracing::warn!(
                    target: "keyledger::fleet",
                    "{ignored} heads-bucket entr(ies) counted for nothing; the last, under {:?}: {}",
                    keyledger::redact_keys(&last.host),
                    keyledger::redact_keys(&last.reason)
                );
            }
        }
        if status.heads_bucket_lost > lost {
            lost = status.heads_bucket_lost;
            tracing::warn!(
                target: "keyledger::fleet",
                "the heads bucket was deleted under the fleet ({lost} time(s) so far); it is made again"
            );
        }
        let now: Vec<(&str, String)> = status.causes.clone();
        if now != causes {
            // The library logs these itself, as they change.
            let logged = ["halted", "stale", "fenced", "stream"];
            for (cause, reason) in now
                .iter()
                .filter(|c| !causes.contains(c) && !logged.contains(&c.0))
            {
                tracing::warn!(target: "keyledger::fleet", cause, "unhealthy: {reason}");
            }
            if now.is_empty() {
                tracing::info!(target: "keyledger::fleet", "healthy again");
            }
            causes = now;
        }
    }
}

/// Completes on the first SIGTERM or SIGINT (Ctrl-C).
#[cfg(unix)]
fn stop_signals() -> Result<impl Future<Output = ()>, Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let cannot = |e: std::io::Error| Failure::new(exit::STORAGE, format!("cannot handle signals: {e}"));
    let mut term = signal(SignalKind::terminate()).map_err(cannot)?;
    let mut int = signal(SignalKind::interrupt()).map_err(cannot)?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            "{name}: finishing the requests in flight, then closing the store (again to stop at once)"
        );
        // A second signal stops at once: acknowledged writes are durable whatever happens.
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal: stopping without waiting for the requests in flight");
            std::process::exit(130);
        });
    })
}

/// Completes on the first Ctrl-C.
#[cfg(not(unix))]
fn stop_signals() -> Result<impl Future<Output = ()>, Failure> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: finishing the requests in flight, then closing the store");
    })
}
