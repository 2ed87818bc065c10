//! `serve`'s log lines: the options that choose them and the `tracing-subscriber` that
//! writes them to standard error, text (the default) or JSON, one object a line. Only
//! `serve` installs it: every other command prints what it printed before, and nothing
//! else. What is logged, and that no line holds a secret, is the library's business.

use clap::{Args, ValueEnum};
use keyledger::AuthLog;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use super::{Failure, exit};

#[derive(Debug, Args)]
pub(super) struct LogArgs {
    /// How log lines on standard error are written: text, or JSON (one object a line)
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    log_format: Format,
    /// The least severe lines keyledger writes (other crates: warnings and errors only,
    /// unless --log-filter or RUST_LOG says otherwise)
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: Level,
    /// Per-target levels in RUST_LOG's syntax (e.g. `info,keyledger::decision=warn`), over
    /// --log-level [default: the RUST_LOG environment variable]
    #[arg(long, value_name = "FILTER")]
    log_filter: Option<String>,
    /// Which /auth decisions get a line: refused ones, or all (accepted ones too)
    #[arg(long, value_name = "WHICH", default_value = "refused")]
    log_auth: AuthLines,
    /// A line for one accepted /auth request in every N as well as for every refused one
    /// (instead of --log-auth all)
    #[arg(long, value_name = "N", conflicts_with = "log_auth",
          value_parser = clap::value_parser!(u64).range(1..))]
    log_auth_sample: Option<u64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Level {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AuthLines {
    Refused,
    All,
}

impl LogArgs {
    /// Which `/auth` decisions the server logs.
    pub(super) fn auth(&self) -> AuthLog {
        match (
            self.log_auth,
            self.log_auth_sample.and_then(std::num::NonZeroU64::new),
        ) {
            (AuthLines::All, _) => AuthLog::All,
            (AuthLines::Refused, Some(n)) => AuthLog::Sampled(n),
            (AuthLines::Refused, None) => AuthLog::Refused,
        }
    }

    /// Installs the subscriber for the rest of the process.
    ///
    /// # Errors
    /// A filter that does not parse: a usage error, before anything is served.
    pub(super) fn install(&self) -> Result<(), Failure> {
        let level = match self.log_level {
            Level::Off => LevelFilter::OFF,
            Level::Error => LevelFilter::ERROR,
            Level::Warn => LevelFilter::WARN,
            Level::Info => LevelFilter::INFO,
            Level::Debug => LevelFilter::DEBUG,
            Level::Trace => LevelFilter::TRACE,
        };
        let directives = match &self.log_filter {
            Some(filter) => filter.clone(),
            None => std::env::var("RUST_LOG").unwrap_or_default(),
        };
        // Without a filter, other crates (the NATS client, the HTTP stack) write only what
        // is wrong: their routine lines (each connection to NATS) are not an operator's.
        let (default, directives) = if directives.trim().is_empty() {
            (level.min(LevelFilter::WARN), format!("keyledger={level}"))
        } else {
            (level, directives)
        };
        let filter = EnvFilter::builder()
            .with_default_directive(default.into())
            .parse(&directives)
            .map_err(|e| {
                Failure::new(
                    exit::USAGE,
                    format!("--log-filter (or RUST_LOG) does not parse: {e}"),
                )
            })?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let installed = match self.log_format {
            Format::Text => builder.with_ansi(false).try_init(),
            Format::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .try_init(),
        };
        installed.map_err(|e| Failure::new(exit::STORAGE, format!("cannot start the log: {e}")))
    }
}
