//! The fleet on the command line: `--nats` and its flags on `keyledger serve` (this host
//! joins the fleet whose shared log is a NATS JetStream stream), and `keyledger fleet`,
//! which lists the hosts, their heads and their lag.
//!
//! Secrets (the NATS password or token) are read from files, never taken as arguments.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use keyledger::{FleetOptions, HostJson, IgnoredJson};
use zeroize::Zeroizing;

use super::args::{grace_arg, lifetime_arg};
use super::{Failure, exit, write_json};

#[derive(Debug, Args)]
pub(super) struct FleetArgs {
    /// Join the fleet whose shared log is on the NATS server(s) at URL (nats://HOST:PORT,
    /// tls://... for TLS, comma-separated for a cluster); needs --chain-key-file
    #[arg(long, value_name = "URL", env = "KEYLEDGER_NATS")]
    nats: Option<String>,
    /// The JetStream stream holding the log
    #[arg(long, value_name = "NAME", default_value = keyledger::DEFAULT_STREAM)]
    stream: String,
    /// This host's id in the fleet, unique per host (default: the host name and process id)
    #[arg(long, value_name = "ID")]
    host_id: Option<String>,
    /// Servers that keep each message when the stream is created (1, 3 or 5)
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    replicas: u8,
    /// NATS user name (with --nats-password-file)
    #[arg(long, value_name = "USER", requires = "nats_password_file")]
    nats_user: Option<String>,
    /// A file whose first line is the NATS password
    #[arg(long, value_name = "FILE", requires = "nats_user")]
    nats_password_file: Option<PathBuf>,
    /// A file whose first line is the NATS token
    #[arg(long, value_name = "FILE", conflicts_with_all = ["nats_user", "nats_creds"])]
    nats_token_file: Option<PathBuf>,
    /// A NATS credentials file (JWT and nkey seed)
    #[arg(long, value_name = "FILE", conflicts_with = "nats_user")]
    nats_creds: Option<PathBuf>,
    /// Require TLS to the NATS server
    #[arg(long)]
    nats_tls: bool,
    /// Certificate authorities (PEM) to trust for the NATS server's certificate
    #[arg(long, value_name = "FILE")]
    nats_ca: Option<PathBuf>,
    /// Client certificate (PEM) to present to the NATS server (with --nats-key)
    #[arg(long, value_name = "FILE", requires = "nats_key")]
    nats_cert: Option<PathBuf>,
    /// The client certificate's key (PEM)
    #[arg(long, value_name = "FILE", requires = "nats_cert")]
    nats_key: Option<PathBuf>,
    /// How often this host announces its head when nothing changes (default 500ms)
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg)]
    heartbeat: Option<Duration>,
    /// How long a host counts as live after its last acknowledged announcement; unheard
    /// that long, it rejects every key until heard again and caught up (default 12s)
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg)]
    lease: Option<Duration>,
    /// How much longer than a silent host's lease a revocation waits before it counts that
    /// host as fenced (default 1s; at least 0.25% of the lease and 20ms)
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg)]
    margin: Option<Duration>,
    /// Keep verifying keys past the lease when unheard, until --stale-reject: revocation
    /// answers then list this host as unconfirmed while it is silent
    #[arg(long)]
    serve_past_lease: bool,
    /// How long a delete, disable or unwhitelist waits for every host that may accept keys (default 15s; 0s
    /// answers at once, naming the hosts that had not applied it yet)
    #[arg(long, value_name = "DURATION", value_parser = grace_arg)]
    confirm_timeout: Option<Duration>,
    /// After losing the shared log this long, /healthz answers 503 (default 10s)
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg)]
    stale_serve: Option<Duration>,
    /// With --serve-past-lease: unheard this long, every key is rejected until caught up (default 60s)
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg)]
    stale_reject: Option<Duration>,
    /// How long one request to the NATS server may take, an append included (default 5s)
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg)]
    nats_timeout: Option<Duration>,
    /// How often this host reports what its keys' rate limits and credits admitted, so
    /// that they hold for the fleet (default 200ms; 10ms to 10s, shorter than the lease)
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg)]
    usage_interval: Option<Duration>,
    /// Append this host's own batches rather than forward them to the fleet's writer (the
    /// live host with the smallest id); it still takes the writes others forward to it
    #[arg(long)]
    no_forward_writes: bool,
}

/// The first line of a secret file, which no user but its owner may read (as for
/// `--chain-key-file` and `--api-key-file`).
fn secret_line(path: &PathBuf, what: &str) -> Result<Zeroizing<String>, Failure> {
    keyledger::read_secret_file(path).map_err(|e| match e {
        keyledger::Error::Io(e) => Failure::new(
            exit::USAGE,
            format!("cannot read the {what} file {}: {e}", path.display()),
        ),
        other => Failure::new(exit::USAGE, format!("the {what} file {other}")),
    })
}

impl FleetArgs {
    /// The fleet to join, if `--nats` was given.
    pub(super) fn options(&self) -> Result<Option<FleetOptions>, Failure> {
        let Some(url) = &self.nats else {
            return Ok(None);
        };
        let mut o = FleetOptions::new(url.clone())
            .stream(self.stream.clone())
            .replicas(usize::from(self.replicas))
            .serve_past_lease(self.serve_past_lease)
            .forward_writes(!self.no_forward_writes)
            .require_tls(self.nats_tls);
        if let Some(id) = &self.host_id {
            o = o.host_id(id.clone());
        }
        if let (Some(user), Some(file)) = (&self.nats_user, &self.nats_password_file) {
            o = o.user_password(user.clone(), secret_line(file, "NATS password")?.as_str());
        }
        if let Some(file) = &self.nats_token_file {
            o = o.token(secret_line(file, "NATS token")?.as_str());
        }
        if let Some(creds) = &self.nats_creds {
            o = o.creds_file(creds.clone());
        }
        if let Some(ca) = &self.nats_ca {
            o = o.tls_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.nats_cert, &self.nats_key) {
            o = o.tls_client_certificate(cert.clone(), key.clone());
        }
        let set = [
            (
                self.heartbeat,
                FleetOptions::heartbeat as fn(FleetOptions, Duration) -> FleetOptions,
            ),
            (self.lease, FleetOptions::lease),
            (self.margin, FleetOptions::margin),
            (self.confirm_timeout, FleetOptions::confirm_timeout),
            (self.stale_serve, FleetOptions::stale_serve),
            (self.stale_reject, FleetOptions::stale_reject),
            (self.nats_timeout, FleetOptions::request_timeout),
            (self.usage_interval, FleetOptions::usage_interval),
        ];
        for (value, setter) in set {
            if let Some(v) = value {
                o = setter(o, v);
            }
        }
        Ok(Some(o))
    }
}

#[derive(Debug, Args)]
pub(super) struct FleetStatusArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// One JSON object per host, a line each
    #[arg(long)]
    json: bool,
}

/// `keyledger fleet`: the hosts heard from, without joining the fleet. Their heads are
/// sealed with the chain key, which it needs to tell them from forged ones.
pub(super) fn run(store: &super::Store, args: FleetStatusArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let options = args.fleet.options()?.ok_or_else(|| {
        Failure::new(
            exit::USAGE,
            "`fleet` needs the shared log: --nats URL (or KEYLEDGER_NATS)",
        )
    })?;
    let key = store.chain_key()?.ok_or_else(|| {
        Failure::new(
            exit::USAGE,
            "`fleet` needs the fleet's chain key (--chain-key-file): the hosts' heads are sealed with it",
        )
    })?;
    let survey = keyledger::survey(&options, &key)?;
    if args.json {
        for h in &survey.hosts {
            write_json(out, &HostJson::from(h))?;
        }
        for ignored in &survey.ignored {
            write_json(out, &IgnoredJson::from(ignored))?;
        }
        return Ok(exit::OK);
    }
    writeln!(
        out,
        "stream {}: {} messages; {} host(s) heard from; {} entr(ies) ignored",
        survey.stream,
        survey.last_position,
        survey.hosts.len(),
        survey.ignored.len()
    )?;
    if let Some(problem) = &survey.stream_problem {
        writeln!(out, "stream {}: cannot be trusted: {problem}", survey.stream)?;
    }
    if !survey.hosts.is_empty() {
        hosts_table(&survey.hosts, out)?;
    }
    for ignored in &survey.ignored {
        writeln!(out, "ignored entry {}: {}", ignored.host, ignored.reason)?;
    }
    Ok(exit::OK)
}

/// One line per host: its head, lag, when it was heard from, and its state.
fn hosts_table(hosts: &[keyledger::HostStatus], out: &mut impl Write) -> Result<(), Failure> {
    writeln!(
        out,
        "{:<32} {:>10} {:>10} {:>8} {:>9}  state",
        "host", "seq", "position", "lag", "heard"
    )?;
    for h in hosts {
        let state = match (h.live, h.halted, h.stale_for.is_zero()) {
            (false, _, _) => "lease ended".to_owned(),
            (true, true, _) => "halted".to_owned(),
            (true, false, false) => format!("stale for {:.1}s", h.stale_for.as_secs_f64()),
            (true, false, true) => "live".to_owned(),
        };
        writeln!(
            out,
            "{:<32} {:>10} {:>10} {:>8} {:>8.1}s  {state}",
            h.host,
            h.seq,
            h.position,
            h.lag,
            h.heard.as_secs_f64()
        )?;
    }
    Ok(())
}
