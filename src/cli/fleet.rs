//! The fleet on the command line: `--nats` and its flags on `keyledger serve` (this host
//! joins the fleet whose shared log is a NATS JetStream stream), and `keyledger fleet`,
//! which lists the hosts, their heads and their lag.
//!
//! Secrets (the NATS password or token) are read from files, never taken as arguments.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use keyledger::{FleetOptions, HostJson};
use zeroize::Zeroizing;

use super::{Failure, exit, grace_arg, lifetime_arg, write_json};

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
    /// How long a host counts as live after it was last heard from (default 3s)
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg)]
    lease: Option<Duration>,
    /// How long a delete, disable or unwhitelist waits for every live host (default 5s; 0s
    /// answers at once, naming the hosts that had not applied it yet)
    #[arg(long, value_name = "DURATION", value_parser = grace_arg)]
    confirm_timeout: Option<Duration>,
    /// After losing the shared log this long, /healthz answers 503 (default 10s)
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg)]
    stale_serve: Option<Duration>,
    /// After losing the shared log this long, every key is rejected until caught up (default 60s)
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg)]
    stale_reject: Option<Duration>,
    /// How long one request to the NATS server may take, an append included (default 5s)
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg)]
    nats_timeout: Option<Duration>,
}

/// The first line of a secret file.
fn secret_line(path: &PathBuf, what: &str) -> Result<Zeroizing<String>, Failure> {
    let text = std::fs::read_to_string(path).map(Zeroizing::new).map_err(|e| {
        Failure::new(
            exit::USAGE,
            format!("cannot read the {what} file {}: {e}", path.display()),
        )
    })?;
    Ok(Zeroizing::new(text.lines().next().unwrap_or_default().to_owned()))
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
            (self.confirm_timeout, FleetOptions::confirm_timeout),
            (self.stale_serve, FleetOptions::stale_serve),
            (self.stale_reject, FleetOptions::stale_reject),
            (self.nats_timeout, FleetOptions::request_timeout),
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

/// `keyledger fleet`: the hosts heard from, without joining the fleet.
pub(super) fn run(args: FleetStatusArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let options = args.fleet.options()?.ok_or_else(|| {
        Failure::new(
            exit::USAGE,
            "`fleet` needs the shared log: --nats URL (or KEYLEDGER_NATS)",
        )
    })?;
    let survey = keyledger::survey(&options)?;
    if args.json {
        for h in &survey.hosts {
            write_json(out, &HostJson::from(h))?;
        }
        return Ok(exit::OK);
    }
    writeln!(
        out,
        "stream {}: {} messages; {} host(s) heard from",
        survey.stream,
        survey.last_position,
        survey.hosts.len()
    )?;
    if let Some(problem) = &survey.stream_problem {
        writeln!(out, "stream {}: cannot be trusted: {problem}", survey.stream)?;
    }
    if survey.hosts.is_empty() {
        return Ok(exit::OK);
    }
    writeln!(
        out,
        "{:<32} {:>10} {:>10} {:>8} {:>9}  state",
        "host", "seq", "position", "lag", "heard"
    )?;
    for h in &survey.hosts {
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
    Ok(exit::OK)
}

/// While `keyledger serve` runs on a host of a fleet: a line on standard error when this
/// host skips messages that are not the fleet's, when the stream becomes untrustworthy
/// (and right again), and when the host stops writing. Reads the status once a second.
pub(super) async fn report(keys: std::sync::Arc<keyledger::KeyStore>) {
    let mut skipped = 0;
    let mut fault: Option<String> = None;
    let mut halted: Option<String> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(status) = keys.fleet_status() else {
            return;
        };
        if status.foreign_messages > skipped {
            let why = status.last_foreign.as_deref().unwrap_or_default();
            eprintln!(
                "fleet: skipped {} stream message(s) that are not the fleet's ({} since start); the last: {why}",
                status.foreign_messages - skipped,
                status.foreign_messages
            );
            skipped = status.foreign_messages;
        }
        if status.stream_fault != fault {
            match &status.stream_fault {
                Some(why) => eprintln!("fleet: the stream cannot be trusted, writes stop: {why}"),
                None => eprintln!("fleet: the stream is right again, writes resume"),
            }
            fault = status.stream_fault.clone();
        }
        if status.halted != halted {
            if let Some(why) = &status.halted {
                eprintln!("fleet: this host stopped writing: {why}");
            }
            halted = status.halted.clone();
        }
    }
}
