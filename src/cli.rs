//! The command-line tool: parses arguments, calls the library (or, with `--server`, a
//! running `keyledger serve`), renders the answers.
//!
//! Owns the contract scripts depend on: the commands, the `--json` field names, the exit
//! codes and the one-line `error:` messages, the same whether a key command runs on the
//! store or through `--server`. It prints a secret only once, in `create` or `roll`; it
//! reads one only from standard input or a file, never from the command line, and never
//! repeats one it read (nor the admin key of `--server`); it redacts anything shaped like
//! one in errors.

mod actors;
#[cfg(feature = "client")]
mod client;
mod demo;
#[cfg(feature = "nats")]
mod fleet;
mod render;
#[cfg(feature = "serve")]
mod serve;

use std::collections::HashMap;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keyledger::{
    Actor, ActorRole, AuditFilter, AuditJson, Builder, ChainKey, ChainKeyProblem, Error, ErrorJson,
    EventKind, ExistingKey, ImportedJson, Integrity, IpNet, KEY_PREFIX, KeyId, KeyJson, KeyStore, KeyView,
    NewKey, RefusedJson, RollJson, Witness, redact_keys,
};
use serde::Serialize;
use zeroize::Zeroizing;

/// The exit codes scripts branch on.
mod exit {
    /// Success; `verify` accepted the key; `check` found the log intact.
    pub(super) const OK: u8 = 0;
    /// `verify` rejected the key; `check` found a problem.
    pub(super) const NO: u8 = 1;
    /// Bad arguments or invalid input.
    pub(super) const USAGE: u8 = 2;
    /// The actor may not do this.
    pub(super) const DENIED: u8 = 3;
    /// No such key, or it has been deleted.
    pub(super) const NOT_FOUND: u8 = 4;
    /// The store could not be read or written (or another process holds it).
    pub(super) const STORAGE: u8 = 5;
}

const AFTER_HELP: &str = "\
Exit codes: 0 success (verify accepted, check intact); 1 verify rejected or check found a
problem; 2 usage error or invalid input; 3 permission denied; 4 key not found or deleted;
5 storage error, including a store in use by another process (or, with --server, a server
that cannot be reached).

While `keyledger serve` holds the store, send the key commands (create, whitelist,
unwhitelist, delete, roll, disable, enable, import-key, import-keys, list, show, audit) to
it: --server URL (or KEYLEDGER_SERVER), with an admin key in KEYLEDGER_API_KEY or
--api-key-file FILE, and without --actor or --actor-role.

New here? Run `keyledger demo`.";

/// Most bytes `verify` and `import-key` read from standard input: a key and its line
/// ending, with room.
const MAX_KEY_INPUT: u64 = 1024;
/// Logs shorter than this replay too fast for a progress bar to help.
const LONG_LOG: u64 = 10_000;

/// Manage, verify and audit the API keys in a keyledger store.
#[derive(Debug, Parser)]
#[command(name = "keyledger", version, after_help = AFTER_HELP, arg_required_else_help = true)]
struct Cli {
    /// The store's directory
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "KEYLEDGER_DB",
        default_value = "keyledger.db"
    )]
    db: PathBuf,
    /// A file holding the chain key (64 hex digits) of a store created with one
    #[arg(long, global = true, value_name = "FILE", env = "KEYLEDGER_CHAIN_KEY_FILE")]
    chain_key_file: Option<PathBuf>,
    /// Refuse the store unless its log reaches this head (`keyledger head` prints it;
    /// keep it outside the store): catches a store rolled back to an older copy
    #[arg(long, global = true, value_name = "SEQ:HASH", env = "KEYLEDGER_EXPECT_HEAD", value_parser = witness_arg)]
    expect_head: Option<Witness>,
    /// Keys with an empty whitelist verify from no address, instead of from any
    #[arg(long, global = true)]
    require_whitelist: bool,
    /// Send the key commands to a running `keyledger serve` at this URL (http://HOST:PORT)
    /// instead of opening the store; they act as the admin key's actor
    #[cfg(feature = "client")]
    #[arg(long, global = true, value_name = "URL", env = "KEYLEDGER_SERVER")]
    server: Option<String>,
    /// With --server: a file (not readable by every user) whose first line is the admin
    /// key; without it, the key comes from KEYLEDGER_API_KEY
    #[cfg(feature = "client")]
    #[arg(long, global = true, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a key and print its secret, this once
    Create(CreateArgs),
    /// Add addresses or ranges to a key's whitelist
    Whitelist(WhitelistArgs),
    /// Remove addresses or ranges from a key's whitelist
    Unwhitelist(UnwhitelistArgs),
    /// Delete a key; it stops verifying at once
    Delete(KeyArgs),
    /// Give a key a new secret, printed this once; the previous one verifies for --grace
    Roll(RollArgs),
    /// Disable a key: it is rejected until enabled again
    Disable(KeyArgs),
    /// Enable a disabled key again
    Enable(KeyArgs),
    /// Revoke a person: every admin key acting as them stops at once (--with-keys: also every key they made)
    RevokeActor(actors::RevokeActorArgs),
    /// Adopt one key another system issued: its secret is read from standard input
    #[command(
        after_help = "The secret is the first line of standard input, never an argument, and is never shown:\n  \
                            printf '%s' \"$SECRET\" | keyledger import-key --actor root --actor-role super-admin \\\n      \
                            --name \"legacy bot\" --role bot"
    )]
    ImportKey(ImportKeyArgs),
    /// Adopt the keys another system issued, from a JSON Lines FILE: all of them or none
    #[command(after_help = IMPORT_KEYS_HELP)]
    ImportKeys(ImportKeysArgs),
    /// List the live keys (neither deleted nor expired); --all adds the others
    List {
        /// Include deleted and expired keys
        #[arg(long)]
        all: bool,
        /// One JSON object per key, a line each
        #[arg(long)]
        json: bool,
    },
    /// Show one key, whatever its status
    Show {
        /// The key's id (16 hex digits)
        #[arg(value_name = "KEY_ID", value_parser = key_id_arg)]
        key_id: KeyId,
        /// One JSON object
        #[arg(long)]
        json: bool,
    },
    /// Verify a key read from standard input, as a service would (exit 0 accepted, 1 rejected)
    #[command(
        after_help = "The key is the first line of standard input, never an argument:\n  \
                            printf '%s' \"$KEY\" | keyledger verify --ip 10.1.2.3"
    )]
    Verify(VerifyArgs),
    /// The audit trail: who did what to which key, when; --at SEQ shows the keys as they stood then
    Audit(AuditArgs),
    /// Replay the whole log and check it: sequence numbers, hash chain, head, every record, snapshot
    Check,
    /// Remove what follows the head: records never acknowledged, which keep the store from opening
    Repair,
    /// The head (last record and its chain hash) to keep outside the store, and whether the history is proven
    Head {
        /// One JSON object: seq, hash, witness, at, keyed, integrity
        #[arg(long)]
        json: bool,
    },
    /// Chain keys for keyed stores
    #[command(subcommand)]
    ChainKey(ChainKeyCommand),
    /// Write the whole log to FILE: a portable, versioned, checksummed backup
    Export {
        /// The backup file to write
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Rebuild an empty store from a backup FILE (same records, same hash chain)
    Import {
        /// The backup file to read
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// A guided tour in a temporary store
    Demo,
    /// Serve forward-auth (/auth), health (/healthz) and the admin API (/v1) over HTTP
    #[cfg(feature = "serve")]
    #[command(after_help = SERVE_HELP)]
    Serve(serve::ServeArgs),
    /// The hosts of a fleet (--nats): each one's head, lag and state, read from the shared log
    #[cfg(feature = "nats")]
    Fleet(fleet::FleetStatusArgs),
}

#[cfg(feature = "serve")]
const SERVE_HELP: &str = "\
The store must exist: make the first super-admin key with `create` before serving, e.g.
  keyledger create --actor root --actor-role super-admin --name root-admin --role super-admin --ip 127.0.0.1
While it serves, the store is locked: manage keys through the admin API (/v1) with an admin
key, e.g. with this tool's key commands and --server http://ADDR. SIGTERM or SIGINT stops accepting, finishes the requests in flight (up to 10 s) and
closes the store. The admin API is for loopback, or behind a proxy's TLS: serve warns when
--listen is not a loopback address.";

#[derive(Debug, Subcommand)]
enum ChainKeyCommand {
    /// Write a new random chain key to FILE (mode 0600; never overwrites)
    New {
        /// The file to create
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Who acts: required on the store, refused with `--server` (see [`parse`]).
#[derive(Debug, Args)]
struct ActorArgs {
    /// Who is acting, as your own authentication established
    #[arg(long, value_name = "ID", required = true)]
    actor: Option<String>,
    /// super-admin, admin or user (a user may not manage keys)
    #[arg(long, value_name = "ROLE", value_parser = ActorRole::from_str, required = true)]
    actor_role: Option<ActorRole>,
}

impl ActorArgs {
    /// The actor of a command on the store, where clap requires both arguments.
    fn actor(&self) -> Result<Actor, Failure> {
        match (&self.actor, self.actor_role) {
            (Some(id), Some(role)) => Ok(Actor::new(id.clone(), role)),
            _ => Err(Failure::new(
                exit::USAGE,
                "--actor and --actor-role are required (see --help)",
            )),
        }
    }

    #[cfg(feature = "client")]
    fn given(&self) -> bool {
        self.actor.is_some() || self.actor_role.is_some()
    }
}

/// What a new or adopted key is: its name, roles, whitelist and expiry.
#[derive(Debug, Args)]
struct KeySpec {
    /// The key's name
    #[arg(long)]
    name: String,
    /// A role the key grants (repeat for more)
    #[arg(long = "role", value_name = "R", required = true)]
    roles: Vec<String>,
    /// A whitelisted IPv4/IPv6 address or CIDR range (repeat for more); none admits any address
    #[arg(long = "ip", value_name = "NET", value_parser = net_arg)]
    ips: Vec<IpNet>,
    /// Expire this long from now: 90s, 15m, 12h, 30d, 2w, 1h30m or ISO 8601 (P30D);
    /// a day is 24 hours
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg, conflicts_with = "expires_at")]
    expires_in: Option<Duration>,
    /// Expire at this time (RFC 3339, e.g. 2026-12-31T23:59:59Z)
    #[arg(long, value_name = "TIME")]
    expires_at: Option<jiff::Timestamp>,
}

impl KeySpec {
    /// When the key expires: `--expires-in` counts from now.
    fn expiry(&self) -> Result<Option<jiff::Timestamp>, Failure> {
        match (self.expires_in, self.expires_at) {
            (Some(lifetime), _) => jiff::Timestamp::now()
                .checked_add(lifetime)
                .map(Some)
                .map_err(|_| {
                    Failure::new(
                        exit::USAGE,
                        "--expires-in reaches past the year 9999; give a shorter duration",
                    )
                }),
            (None, at) => Ok(at),
        }
    }

    /// The key for the store, expiring at `expiry` (from [`expiry`](Self::expiry)).
    fn new_key(&self, expiry: Option<jiff::Timestamp>) -> NewKey {
        let mut new = NewKey::new(self.name.clone());
        for role in &self.roles {
            new = new.role(role.clone());
        }
        for net in &self.ips {
            new = new.allow(*net);
        }
        match expiry {
            Some(at) => new.expires_at(SystemTime::from(at)),
            None => new,
        }
    }

    /// The key for the admin API: `expires_in` as given, which the server counts from its
    /// write as the store here counts it from its own; or `expires_at`.
    #[cfg(feature = "client")]
    fn body(&self, expiry: Option<jiff::Timestamp>, relative: bool) -> client::KeyBody {
        let (expires_at, expires_in) = match (relative, self.expires_in) {
            (true, Some(lifetime)) => (None, Some(client::duration(lifetime))),
            _ => (expiry.map(|t| t.to_string()), None),
        };
        client::KeyBody {
            name: self.name.clone(),
            roles: self.roles.clone(),
            ips: self.ips.iter().map(ToString::to_string).collect(),
            expires_at,
            expires_in,
            actor: None,
        }
    }
}

#[derive(Debug, Args)]
struct CreateArgs {
    #[command(flatten)]
    who: ActorArgs,
    #[command(flatten)]
    key: KeySpec,
    /// For an admin key: the person it acts as over the admin API (by default its
    /// creator); only a super admin may name someone else
    #[arg(long = "for", value_name = "PERSON")]
    acts_for: Option<String>,
    /// One JSON object, with the secret in `key`
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ImportKeyArgs {
    #[command(flatten)]
    who: ActorArgs,
    #[command(flatten)]
    key: KeySpec,
    /// One JSON object: the adopted key, without its secret
    #[arg(long)]
    json: bool,
    /// Catches a secret given on the command line, to refuse it without echoing it.
    #[arg(hide = true)]
    key_on_command_line: Vec<String>,
}

const IMPORT_KEYS_HELP: &str = "\
Each line of FILE is one JSON object, one key:
  {\"name\": \"legacy bot\", \"roles\": [\"bot\"], \"ips\": [\"10.0.0.0/8\"], \"expires_at\": \"2027-01-01T00:00:00Z\", \"key\": \"SECRET\"}
  {\"name\": \"old sync\", \"roles\": [\"sync\"], \"sha256\": \"<64 lowercase hex digits of SHA-256(SECRET)>\"}
\"ips\" and \"expires_at\" are optional; exactly one of \"key\" and \"sha256\" is required; any
other field, and a blank line, is refused. The first bad line is named (line N) and nothing
is imported. At most 1,000,000 lines and 256 MiB.";

#[derive(Debug, Args)]
struct ImportKeysArgs {
    #[command(flatten)]
    who: ActorArgs,
    /// The JSON Lines file to read
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// One JSON object per adopted key, a line each: {"line", "id"}
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct WhitelistArgs {
    #[command(flatten)]
    who: ActorArgs,
    /// The key's id (16 hex digits)
    #[arg(value_name = "KEY_ID", value_parser = key_id_arg)]
    key_id: KeyId,
    /// IPv4/IPv6 addresses or CIDR ranges
    #[arg(value_name = "NET", required = true, value_parser = net_arg)]
    nets: Vec<IpNet>,
}

#[derive(Debug, Args)]
struct UnwhitelistArgs {
    #[command(flatten)]
    change: WhitelistArgs,
    /// Allow removing the last entry, after which the key verifies from any address
    #[arg(long)]
    allow_any_address: bool,
}

/// An actor and the key they act on.
#[derive(Debug, Args)]
struct KeyArgs {
    #[command(flatten)]
    who: ActorArgs,
    /// The key's id (16 hex digits)
    #[arg(value_name = "KEY_ID", value_parser = key_id_arg)]
    key_id: KeyId,
}

#[derive(Debug, Args)]
struct RollArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// How long the previous secret keeps verifying: 0s (the default) stops it at once;
    /// 90s, 15m, 12h, 7d..., at most 365d; a day is 24 hours
    #[arg(long, value_name = "DURATION", value_parser = grace_arg, default_value = "0s")]
    grace: Duration,
    /// One JSON object: id, key (the new secret) and previous_valid_until
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The client's address
    #[arg(long, value_name = "IP")]
    ip: IpAddr,
    /// One JSON object: valid, reason, id, name, roles
    #[arg(long)]
    json: bool,
    /// Catches a key given on the command line, to refuse it without echoing it.
    #[arg(hide = true)]
    key_on_command_line: Vec<String>,
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// Only entries about this key
    #[arg(long = "key", value_name = "KEY_ID", value_parser = key_id_arg)]
    key: Option<KeyId>,
    /// Only entries by this actor
    #[arg(long, value_name = "ID")]
    actor: Option<String>,
    /// Only entries of this kind: created, imported, whitelisted, unwhitelisted, rolled,
    /// disabled, enabled, deleted or actor_revoked
    #[arg(long, value_name = "KIND", value_parser = EventKind::from_str)]
    kind: Option<EventKind>,
    /// Only entries at or after this time (RFC 3339, e.g. 2026-01-31T09:00:00Z)
    #[arg(long, value_name = "TIME")]
    since: Option<jiff::Timestamp>,
    /// Only entries at or before this time (RFC 3339)
    #[arg(long, value_name = "TIME")]
    until: Option<jiff::Timestamp>,
    /// Show every key (or only --key) as it stood right after record SEQ
    #[arg(long, value_name = "SEQ", conflicts_with_all = ["actor", "kind", "since", "until"])]
    at: Option<u64>,
    /// The security trail instead: management commands that were refused (with --key,
    /// --actor, --since and --until)
    #[arg(long, conflicts_with_all = ["kind", "at"])]
    refused: bool,
    /// One JSON object per entry (per key with --at), a line each
    #[arg(long)]
    json: bool,
}

impl AuditArgs {
    /// The filters given (`--kind` is refused with `--refused` by clap).
    fn filter(&self) -> AuditFilter {
        let mut filter = AuditFilter::default();
        filter.key = self.key;
        filter.actor.clone_from(&self.actor);
        filter.kind = self.kind;
        filter.since = self.since.map(SystemTime::from);
        filter.until = self.until.map(SystemTime::from);
        filter
    }
}

fn witness_arg(s: &str) -> Result<Witness, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

fn key_id_arg(s: &str) -> Result<KeyId, String> {
    if s.starts_with(KEY_PREFIX) {
        return Err(
            "that is a key's secret, not its id; an id is 16 hex digits (see `keyledger list`)".into(),
        );
    }
    s.parse().map_err(|e: Error| e.to_string())
}

fn net_arg(s: &str) -> Result<IpNet, String> {
    keyledger::parse_net(s).map_err(|e| e.to_string())
}

/// What was wrong with an argument, without the library's "invalid FIELD:" (clap names
/// the argument).
fn reason(e: Error) -> String {
    match e {
        Error::InvalidInput { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// How long a new key lives: more than nothing.
fn lifetime_arg(s: &str) -> Result<Duration, String> {
    keyledger::parse_lifetime(s).map_err(reason)
}

/// How long a rolled key's previous secret keeps verifying: nothing at all, or more.
fn grace_arg(s: &str) -> Result<Duration, String> {
    keyledger::parse_grace(s).map_err(reason)
}

/// Runs the command line and returns the exit code of the contract.
pub(crate) fn run() -> ExitCode {
    let (cli, given) = match parse() {
        Ok(parsed) => parsed,
        Err(e) => return clap_exit(&e),
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let result = cli.execute(&given, &mut out);
    let flushed = out.flush().map_err(Failure::from);
    match result.and_then(|code| flushed.map(|()| code)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => failure.report(),
    }
}

/// Parses the command line. On the store, the key commands require `--actor` and
/// `--actor-role`; through `--server` they take neither: the server's URL, from the command
/// line or the environment, decides which rules the rest is parsed by.
fn parse() -> Result<(Cli, ArgMatches), clap::Error> {
    let command = Cli::command();
    #[cfg(feature = "client")]
    let command = if to_server(&command) {
        command.mut_subcommands(|sub| {
            if sub.get_arguments().any(|a| a.get_id() == "actor_role") {
                sub.mut_arg("actor", |a| a.required(false))
                    .mut_arg("actor_role", |a| a.required(false))
            } else {
                sub
            }
        })
    } else {
        command
    };
    let given = command.try_get_matches()?;
    let cli = Cli::from_arg_matches(&given)?;
    Ok((cli, given))
}

/// Whether a server's URL is given, whatever else is wrong with the arguments.
#[cfg(feature = "client")]
fn to_server(command: &clap::Command) -> bool {
    command
        .clone()
        .ignore_errors(true)
        .try_get_matches()
        .ok()
        .and_then(|given| given.get_one::<String>("server").cloned())
        .is_some_and(|url| !url.is_empty())
}

fn clap_exit(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE))
        }
        _ => Failure::new(exit::USAGE, clap_message(e)).report(),
    }
}

/// clap's error as one line: its first paragraph, with the usage and tips left out.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.split("\n\n").next().unwrap_or_default();
    let mut lines = first.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut message = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error:")
        .trim()
        .to_owned();
    let rest: Vec<&str> = lines.collect();
    if !rest.is_empty() {
        message.push(' ');
        message.push_str(&rest.join(", "));
    }
    message.push_str(" (see --help)");
    message
}

/// Why a command failed, and the exit code that says so.
#[derive(Debug)]
struct Failure {
    code: u8,
    /// Empty when there is nothing to say (the reader of standard output went away).
    message: String,
    /// The error of the store or of the admin API it came from, in the API's words: what
    /// a command branches on, alike on the store and through `--server`.
    cause: Option<Box<ErrorJson>>,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            cause: None,
        }
    }

    /// The kind of error it came from ([`Error::code`], or one of the admin API's own).
    fn kind(&self) -> Option<&str> {
        self.cause.as_deref().map(|c| c.error.as_str())
    }

    fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    fn report(self) -> ExitCode {
        if !self.message.is_empty() {
            let _ = writeln!(io::stderr(), "error: {}", one_line(&redact_keys(&self.message)));
        }
        ExitCode::from(self.code)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        ErrorJson::from(&e).into()
    }
}

impl From<ErrorJson> for Failure {
    /// The store's error as the admin API answers it, or the API's own: the same message
    /// and exit code either way.
    fn from(e: ErrorJson) -> Self {
        Failure {
            code: exit_code(&e),
            message: e.message.clone().unwrap_or_else(|| e.error.clone()),
            cause: Some(Box::new(e)),
        }
    }
}

impl From<io::Error> for Failure {
    /// Only output errors come here: a reader that stopped reading (`keyledger audit |
    /// head`) is not a failure worth a message.
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Failure::new(exit::OK, "");
        }
        Failure::new(exit::STORAGE, format!("cannot write the output: {e}"))
    }
}

/// The exit code of an error by its kind: [`Error::code`] for the store's, which the
/// admin API answers as they are, and the API's own kinds. One mapping, so that a command
/// exits alike on the store and through `--server`.
fn exit_code(e: &ErrorJson) -> u8 {
    match e.error.as_str() {
        "invalid_input"
        | "whitelist_unchanged"
        | "state_unchanged"
        | "last_whitelist_entry"
        | "secret_known"
        | "nothing_to_revoke"
        | "chain_key_mismatch" => exit::USAGE,
        // The admin API's: a route that is not there (an old or foreign server).
        "not_found" | "method_not_allowed" => exit::USAGE,
        "permission_denied" => exit::DENIED,
        // The admin API's: the admin key itself was refused.
        "unauthorized" | "forbidden" => exit::DENIED,
        "key_not_found" | "key_deleted" => exit::NOT_FOUND,
        "import_entry" => e.source.as_deref().map_or(exit::STORAGE, exit_code),
        // The store's (`storage`, `io`, `locked`, `closed`, ...) and the API's `overloaded`,
        // `timeout` and `internal`.
        _ => exit::STORAGE,
    }
}

fn one_line(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The store named on the command line, and how to open it.
struct Store {
    dir: PathBuf,
    chain_key_file: Option<PathBuf>,
    expect_head: Option<Witness>,
    require_whitelist: bool,
}

impl Store {
    fn builder(&self) -> Result<Builder, Failure> {
        let mut builder = KeyStore::builder().require_whitelist(self.require_whitelist);
        if let Some(witness) = self.expect_head {
            builder = builder.expect_head(witness);
        }
        Ok(match self.chain_key()? {
            Some(key) => builder.chain_key(key),
            None => builder,
        })
    }

    /// The chain key from `--chain-key-file`, if one was named.
    fn chain_key(&self) -> Result<Option<ChainKey>, Failure> {
        let Some(path) = &self.chain_key_file else {
            return Ok(None);
        };
        let key = ChainKey::from_file(path).map_err(|e| match e {
            Error::Io(e) => Failure::new(
                exit::USAGE,
                format!("cannot read the chain key file {}: {e}", path.display()),
            ),
            Error::UnsafeFile { .. } => Failure::new(exit::USAGE, format!("the chain key file {e}")),
            other => Failure::from(other).context(format_args!("in {}", path.display())),
        })?;
        Ok(Some(key))
    }

    /// Opens the store, which must exist unless `create`: reads never create one.
    fn open(&self, create: bool) -> Result<KeyStore, Failure> {
        self.open_with(create, |b| b)
    }

    /// Opens the store with more options than the command line's global ones.
    fn open_with(&self, create: bool, more: impl FnOnce(Builder) -> Builder) -> Result<KeyStore, Failure> {
        let (builder, bar) = with_progress(more(self.builder()?), "replaying the log");
        let opened = builder.create_if_missing(create).open(&self.dir);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        opened.map_err(|e| self.failed("open", e))
    }

    /// An error from `verb`ing the store, saying which store.
    fn failed(&self, verb: &str, e: Error) -> Failure {
        match e {
            // Already names the store and says it is in use.
            Error::Locked { .. } => return e.into(),
            Error::NotAStore { .. } => {
                return Failure::new(
                    exit::STORAGE,
                    format!(
                        "no store at {}: the first `create` makes one in a new or empty directory; \
                         choose another with --db or KEYLEDGER_DB",
                        self.dir.display()
                    ),
                );
            }
            _ => {}
        }
        let key_missing = matches!(
            &e,
            Error::InvalidInput {
                field: "chain key",
                ..
            } | Error::ChainKeyMismatch(ChainKeyProblem::Missing)
        ) && self.chain_key_file.is_none();
        let mut failure =
            Failure::from(e).context(format_args!("cannot {verb} the store at {}", self.dir.display()));
        if key_missing {
            failure
                .message
                .push_str(" with --chain-key-file FILE or KEYLEDGER_CHAIN_KEY_FILE");
        }
        failure
    }
}

/// Hands the builder a progress callback drawing on stderr, if stderr is a terminal; the
/// bar appears only once the log proves long.
fn with_progress(builder: Builder, message: &'static str) -> (Builder, Option<ProgressBar>) {
    if !io::stderr().is_terminal() {
        return (builder, None);
    }
    let bar = ProgressBar::hidden();
    if let Ok(style) = ProgressStyle::with_template("{msg} [{wide_bar}] {pos}/{len} records ({eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    let shown = bar.clone();
    let builder = builder.on_progress(move |done, total| {
        if total < LONG_LOG {
            return;
        }
        shown.set_length(total);
        shown.set_position(done);
        if shown.is_hidden() {
            shown.set_draw_target(ProgressDrawTarget::stderr());
            shown.tick();
        }
    });
    (builder, Some(bar))
}

/// Where the key commands go.
enum Target<'a> {
    /// The store named by `--db`, opened by this process; commands act as `--actor`.
    Local(&'a Store),
    /// A running `keyledger serve`, through its admin API; commands act as the admin key's
    /// actor.
    #[cfg(feature = "client")]
    Remote(&'a client::Client),
}

impl Command {
    /// Whether `--server` sends this command to the server: the key commands go there;
    /// the others work on a store opened here.
    #[cfg(feature = "client")]
    fn goes_to_server(&self) -> bool {
        matches!(
            self,
            Command::Create(_)
                | Command::Whitelist(_)
                | Command::Unwhitelist(_)
                | Command::Delete(_)
                | Command::Roll(_)
                | Command::Disable(_)
                | Command::Enable(_)
                | Command::RevokeActor(_)
                | Command::ImportKey(_)
                | Command::ImportKeys(_)
                | Command::List { .. }
                | Command::Show { .. }
                | Command::Audit(_)
        )
    }

    /// Who acts, for a command that changes keys.
    #[cfg(feature = "client")]
    fn actor_args(&self) -> Option<&ActorArgs> {
        match self {
            Command::Create(args) => Some(&args.who),
            Command::Whitelist(args) => Some(&args.who),
            Command::Unwhitelist(args) => Some(&args.change.who),
            Command::Delete(args) | Command::Disable(args) | Command::Enable(args) => Some(&args.who),
            Command::Roll(args) => Some(&args.key.who),
            Command::RevokeActor(args) => Some(&args.who),
            Command::ImportKey(args) => Some(&args.who),
            Command::ImportKeys(args) => Some(&args.who),
            _ => None,
        }
    }
}

/// The client of `--server` (or `KEYLEDGER_SERVER`) for a key command; `None` to run on
/// the store. A server given on the command line to a command that works only on a store
/// is a usage error; one from the environment is ignored there. Arguments that only mean
/// something on a store (`--actor`, `--db`, ...) are refused with a server, unless they
/// come from the environment.
#[cfg(feature = "client")]
fn client_for(cli: &Cli, given: &ArgMatches) -> Result<Option<client::Client>, Failure> {
    use clap::parser::ValueSource;
    let on_command_line = |id: &str| given.value_source(id) == Some(ValueSource::CommandLine);
    let url = cli.server.as_deref().filter(|url| !url.is_empty());
    let Some(url) = url.filter(|_| cli.command.goes_to_server()) else {
        if url.is_some() && on_command_line("server") {
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "`{}` works on a store opened here, never through --server: run it without \
                     --server, where the store is",
                    given.subcommand_name().unwrap_or("this command")
                ),
            ));
        }
        if on_command_line("api_key_file") {
            return Err(Failure::new(
                exit::USAGE,
                "--api-key-file is the admin key of --server, for the key commands only",
            ));
        }
        return Ok(None);
    };
    if cli.command.actor_args().is_some_and(ActorArgs::given) {
        return Err(Failure::new(
            exit::USAGE,
            "--actor and --actor-role are not taken with a server (--server or KEYLEDGER_SERVER): \
             the command acts as the actor its admin key acts as",
        ));
    }
    for (id, flag) in [
        ("db", "--db"),
        ("chain_key_file", "--chain-key-file"),
        ("expect_head", "--expect-head"),
        ("require_whitelist", "--require-whitelist"),
    ] {
        if on_command_line(id) {
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "{flag} is for a store opened here; with a server (--server or KEYLEDGER_SERVER), \
                     the command goes to the server's store"
                ),
            ));
        }
    }
    client::Client::new(url, cli.api_key_file.as_deref()).map(Some)
}

impl Cli {
    fn execute(self, given: &ArgMatches, out: &mut impl Write) -> Result<u8, Failure> {
        #[cfg(feature = "client")]
        let client = client_for(&self, given)?;
        #[cfg(not(feature = "client"))]
        let _ = given;
        let store = Store {
            dir: self.db,
            chain_key_file: self.chain_key_file,
            expect_head: self.expect_head,
            require_whitelist: self.require_whitelist,
        };
        #[cfg(feature = "client")]
        let target = client.as_ref().map_or(Target::Local(&store), Target::Remote);
        #[cfg(not(feature = "client"))]
        let target = Target::Local(&store);
        match self.command {
            Command::Create(args) => create(&target, args, out),
            Command::Whitelist(args) => change_whitelist(&target, args, Change::Add, out),
            Command::Unwhitelist(args) => {
                let any = args.allow_any_address;
                change_whitelist(
                    &target,
                    args.change,
                    if any { Change::RemoveToAny } else { Change::Remove },
                    out,
                )
            }
            Command::Delete(args) => delete(&target, args, out),
            Command::Roll(args) => roll(&target, args, out),
            Command::Disable(args) => switch(&target, args, Switch::Disable, out),
            Command::Enable(args) => switch(&target, args, Switch::Enable, out),
            Command::RevokeActor(args) => actors::revoke(&target, args, out),
            Command::ImportKey(args) => import_key(&target, args, out),
            Command::ImportKeys(args) => import_keys(&target, args, out),
            Command::List { all, json } => list(&target, all, json, out),
            Command::Show { key_id, json } => show(&target, key_id, json, out),
            Command::Audit(args) => audit(&target, args, out),
            Command::Verify(args) => verify(&store, args, out),
            Command::Check => check(&store, out),
            Command::Repair => repair(&store, out),
            Command::Head { json } => head(&store, json, out),
            Command::ChainKey(ChainKeyCommand::New { file }) => new_chain_key(&file, out),
            Command::Export { file } => export(&store, &file, out),
            Command::Import { file } => import(&store, &file, out),
            Command::Demo => demo::run(out),
            #[cfg(feature = "serve")]
            Command::Serve(args) => serve::run(&store, args, out),
            #[cfg(feature = "nats")]
            Command::Fleet(args) => fleet::run(&store, args, out),
        }
    }
}

fn write_json(out: &mut impl Write, value: &impl Serialize) -> Result<(), Failure> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

fn existing_key(keys: &KeyStore, id: KeyId) -> Result<KeyView, Failure> {
    keys.key(id).ok_or_else(|| Error::KeyNotFound(id).into())
}

/// A key id the admin API gave back.
#[cfg(feature = "client")]
fn answered_id(id: &str) -> Result<KeyId, Failure> {
    id.parse().map_err(|e: Error| {
        Failure::new(
            exit::STORAGE,
            format!("the server gave back a key id that is not one: {e}"),
        )
    })
}

const SHOWN_ONCE: &str =
    "This is the only time the key is shown: keyledger keeps only its hash. Store it now.";

fn create(target: &Target, args: CreateArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let created = match target {
        Target::Local(store) => {
            let keys = store.open(true)?;
            // After the open, which may replay a long log: --expires-in counts from the write.
            let mut new = args.key.new_key(args.key.expiry()?);
            if let Some(person) = &args.acts_for {
                new = new.acting_for(person.clone());
            }
            let created = keys.create_key(&args.who.actor()?, new)?;
            KeyJson::created(&existing_key(&keys, created.id)?, &created.key)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => {
            // Refused here as on the store; the server counts --expires-in from its write.
            let expiry = args.key.expiry()?;
            let mut body = args.key.body(expiry, true);
            body.actor.clone_from(&args.acts_for);
            client.create(&body)?
        }
    };
    if args.json {
        write_json(out, &created)?;
    } else {
        writeln!(out, "created key {} \"{}\"", created.id, created.name)?;
        key_summary(out, &created)?;
        writeln!(out, "  key        {}", created.key.as_deref().unwrap_or_default())?;
        writeln!(out)?;
        writeln!(out, "{SHOWN_ONCE}")?;
    }
    Ok(exit::OK)
}

/// The lines `create` and `import-key` print under their first.
fn key_summary(out: &mut impl Write, key: &KeyJson) -> io::Result<()> {
    writeln!(out, "  roles      {}", key.roles.join(", "))?;
    writeln!(out, "  whitelist  {}", render::whitelist(&key.whitelist))?;
    if let Some(at) = &key.expires_at {
        writeln!(out, "  expires    {} UTC", render::human_time(at))?;
    }
    Ok(())
}

fn roll(target: &Target, args: RollArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let id = args.key.key_id;
    let (rolled, name) = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            let rolled = keys.roll_key(&args.key.who.actor()?, id, args.grace)?;
            (RollJson::from(&rolled), existing_key(&keys, id)?.name)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => {
            // The name first: once rolled, the new secret is shown whatever happens next.
            let name = if args.json {
                String::new()
            } else {
                client.show(id)?.name.clone()
            };
            (client.roll(id, args.grace)?, name)
        }
    };
    if args.json {
        write_json(out, &rolled)?;
        return Ok(exit::OK);
    }
    writeln!(out, "rolled key {} \"{name}\"", rolled.id)?;
    writeln!(out, "  key        {}", rolled.key)?;
    if args.grace.is_zero() {
        writeln!(out, "  previous   stopped verifying at once")?;
    } else {
        writeln!(
            out,
            "  previous   verifies until {} UTC (grace {})",
            render::human_time(&rolled.previous_valid_until),
            render::duration(args.grace)
        )?;
    }
    writeln!(out)?;
    writeln!(out, "{SHOWN_ONCE}")?;
    Ok(exit::OK)
}

/// What `disable` and `enable` do.
#[derive(Clone, Copy)]
enum Switch {
    Disable,
    Enable,
}

fn switch(target: &Target, args: KeyArgs, to: Switch, out: &mut impl Write) -> Result<u8, Failure> {
    let id = args.key_id;
    let view = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            let actor = args.who.actor()?;
            match to {
                Switch::Disable => keys.disable_key(&actor, id)?.seq,
                Switch::Enable => keys.enable_key(&actor, id)?,
            };
            KeyJson::from(&existing_key(&keys, id)?)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => client.switch(id, matches!(to, Switch::Enable))?,
    };
    match to {
        Switch::Disable => writeln!(
            out,
            "disabled key {} \"{}\"; it is rejected until enabled again",
            view.id, view.name
        )?,
        Switch::Enable => writeln!(
            out,
            "enabled key {} \"{}\"; its status is now {}",
            view.id, view.name, view.status
        )?,
    }
    Ok(exit::OK)
}

fn import_key(target: &Target, args: ImportKeyArgs, out: &mut impl Write) -> Result<u8, Failure> {
    const HOW: &str =
        "printf '%s' \"$SECRET\" | keyledger import-key --actor ID --actor-role ROLE --name NAME --role R";
    if !args.key_on_command_line.is_empty() {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "import-key reads the secret from standard input, never from the command line, where \
                 other users and your shell history would see it: {HOW}"
            ),
        ));
    }
    if io::stdin().is_terminal() {
        // The terminal would echo it as it is typed.
        return Err(Failure::new(
            exit::USAGE,
            format!("import-key reads the secret from a pipe or a file, not a terminal: {HOW}"),
        ));
    }
    let secret = read_key(HOW)?;
    let expiry = args.key.expiry()?;
    // Checked before the open (or the request): a refused secret makes no store.
    let adopted = ExistingKey::with_secret(args.key.new_key(expiry), &secret)?;
    // The store names the bad entry of an import by its position: here there is one.
    let whole = |failure: Failure| import_failure(failure, |_| String::new());
    let view = match target {
        Target::Local(store) => {
            drop(secret);
            let keys = store.open(true)?;
            let ids = keys
                .import_keys(&args.who.actor()?, vec![adopted])
                .map_err(|e| whole(e.into()))?;
            let id = ids.first().copied().ok_or_else(no_id)?;
            KeyJson::from(&existing_key(&keys, id)?)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => {
            drop(adopted);
            let imported = client
                .import_key(&args.key.body(expiry, false), &secret)
                .map_err(whole)?;
            drop(secret);
            let id = imported.first().ok_or_else(no_id)?;
            client.show(answered_id(&id.id)?)?
        }
    };
    if args.json {
        write_json(out, &view)?;
    } else {
        writeln!(out, "imported key {} \"{}\"", view.id, view.name)?;
        key_summary(out, &view)?;
        writeln!(out)?;
        writeln!(
            out,
            "keyledger kept only the secret's hash; the clients that hold it verify as before."
        )?;
    }
    Ok(exit::OK)
}

fn no_id() -> Failure {
    Failure::new(exit::STORAGE, "the store adopted the key but gave no id back")
}

/// Opens an `import-keys` file.
fn open_import_file(path: &Path) -> Result<std::fs::File, Failure> {
    std::fs::File::open(path)
        .map_err(|e| Failure::new(exit::USAGE, format!("cannot read {}: {e}", path.display())))
}

/// Reads the keys of an `import-keys` file (`path`, read from `input`): one key a line,
/// the first bad line named.
fn read_import(path: &Path, input: impl BufRead) -> Result<Vec<ExistingKey>, Failure> {
    let shown = path.display();
    keyledger::read_import_lines(input).map_err(|e| match e {
        Error::Io(e) => Failure::new(exit::USAGE, format!("cannot read {shown}: {e}")),
        Error::ImportEntry { .. } => nothing_imported(e.into()),
        other => Failure::from(other).context(shown),
    })
}

/// The library names the bad entry of an import by its position from 1 (`key 3: ...`);
/// `entry` says how to name it here.
fn import_failure(failure: Failure, entry: impl Fn(usize) -> String) -> Failure {
    let inner = failure.cause.as_deref().and_then(|cause| match cause {
        ErrorJson {
            error,
            index: Some(index),
            source: Some(source),
            ..
        } if error == "import_entry" => Some((*index, source.as_ref().clone())),
        _ => None,
    });
    match inner {
        Some((index, source)) => {
            let mut failure = Failure::from(source);
            failure.message.insert_str(0, &entry(index));
            failure
        }
        None => failure,
    }
}

/// An `import-keys` failure: the bad line named, and that nothing was imported.
fn nothing_imported(failure: Failure) -> Failure {
    let mut failure = import_failure(failure, |n| format!("line {n}: "));
    failure.message.push_str("; nothing was imported");
    failure
}

fn import_keys(target: &Target, args: ImportKeysArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let (imported, names) = match target {
        Target::Local(store) => {
            let adopted = read_import(&args.file, io::BufReader::new(open_import_file(&args.file)?))?;
            let keys = store.open(true)?;
            // Every line holds one key, so the library's entry N is line N.
            let ids = keys
                .import_keys(&args.who.actor()?, adopted)
                .map_err(|e| nothing_imported(e.into()))?;
            let names: HashMap<String, String> = ids
                .iter()
                .filter_map(|id| keys.key(*id))
                .map(|v| (v.id.to_string(), v.name))
                .collect();
            let imported = (1..).zip(ids).map(|(line, id)| ImportedJson::new(line, id));
            (imported.collect::<Vec<_>>(), names)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => {
            let lines = read_import_bytes(&args.file)?;
            // Read here as on the store, for the same refusals of a bad file.
            read_import(&args.file, &lines[..])?;
            let imported = client.import(lines).map_err(nothing_imported)?;
            let names: HashMap<String, String> = if args.json {
                HashMap::new()
            } else {
                let listed = client.list(true)?;
                listed.iter().map(|k| (k.id.clone(), k.name.clone())).collect()
            };
            (imported, names)
        }
    };
    if args.json {
        for line in &imported {
            write_json(out, line)?;
        }
        return Ok(exit::OK);
    }
    let mut table = render::Table::new(vec!["LINE", "ID", "NAME"]);
    for line in &imported {
        let name = names.get(&line.id).cloned().unwrap_or_default();
        table.row(vec![line.line.to_string(), line.id.clone(), name]);
    }
    table.write(out, "")?;
    let count = imported.len();
    writeln!(
        out,
        "imported {count} key{} from {} in one commit; keyledger kept only their hashes",
        if count == 1 { "" } else { "s" },
        args.file.display()
    )?;
    Ok(exit::OK)
}

/// An `import-keys` file whole, to send: it holds secrets, so its buffer is sized once and
/// zeroed when dropped.
#[cfg(feature = "client")]
fn read_import_bytes(path: &Path) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let file = open_import_file(path)?;
    let cannot = |e: io::Error| Failure::new(exit::USAGE, format!("cannot read {}: {e}", path.display()));
    let limit = keyledger::MAX_IMPORT_BYTES + 1;
    let size = file.metadata().map_err(cannot)?.len().min(limit);
    let mut bytes = Zeroizing::new(Vec::with_capacity(
        usize::try_from(size).unwrap_or(0).saturating_add(1),
    ));
    file.take(limit).read_to_end(&mut bytes).map_err(cannot)?;
    Ok(bytes)
}

/// What `whitelist` and `unwhitelist` do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Remove,
    /// Remove, even the last entry.
    RemoveToAny,
}

fn change_whitelist(
    target: &Target,
    args: WhitelistArgs,
    change: Change,
    out: &mut impl Write,
) -> Result<u8, Failure> {
    let (id, nets) = (args.key_id, &args.nets);
    let changed = match target {
        Target::Local(store) => change_whitelist_here(store, &args, change),
        #[cfg(feature = "client")]
        Target::Remote(client) => {
            client.whitelist(id, nets, change == Change::Add, change == Change::RemoveToAny)
        }
    };
    let view = changed.map_err(|mut failure| {
        if failure.kind() == Some("last_whitelist_entry") {
            failure.message.push_str(" (pass --allow-any-address to mean it)");
        }
        failure
    })?;
    let given: Vec<String> = nets.iter().map(ToString::to_string).collect();
    writeln!(
        out,
        "{} {} on key {id} \"{}\"; its whitelist is now: {}",
        if change == Change::Add {
            "whitelisted"
        } else {
            "unwhitelisted"
        },
        render::whitelist(&given),
        view.name,
        render::whitelist(&view.whitelist)
    )?;
    Ok(exit::OK)
}

fn change_whitelist_here(store: &Store, args: &WhitelistArgs, change: Change) -> Result<KeyJson, Failure> {
    let keys = store.open(false)?;
    let (actor, id) = (args.who.actor()?, args.key_id);
    let nets = args.nets.iter().copied();
    match change {
        Change::Add => keys.whitelist_ip(&actor, id, nets)?,
        Change::Remove => keys.unwhitelist_ip(&actor, id, nets)?.seq,
        Change::RemoveToAny => keys.unwhitelist_ip_allowing_any_address(&actor, id, nets)?.seq,
    };
    Ok(KeyJson::from(&existing_key(&keys, id)?))
}

fn delete(target: &Target, args: KeyArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let view = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            keys.delete_key(&args.who.actor()?, args.key_id)?;
            KeyJson::from(&existing_key(&keys, args.key_id)?)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => client.delete(args.key_id)?,
    };
    writeln!(
        out,
        "deleted key {} \"{}\"; it no longer verifies",
        view.id, view.name
    )?;
    Ok(exit::OK)
}

fn list(target: &Target, all: bool, json: bool, out: &mut impl Write) -> Result<u8, Failure> {
    let views: Vec<KeyJson> = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            let views = if all { keys.all_keys() } else { keys.keys() };
            views.iter().map(KeyJson::from).collect()
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => client.list(all)?,
    };
    if json {
        for view in &views {
            write_json(out, view)?;
        }
    } else if views.is_empty() {
        writeln!(out, "{}", if all { "no keys" } else { "no live keys" })?;
    } else {
        render::keys_table(&views).write(out, "")?;
    }
    Ok(exit::OK)
}

fn show(target: &Target, id: KeyId, json: bool, out: &mut impl Write) -> Result<u8, Failure> {
    let view = match target {
        Target::Local(store) => KeyJson::from(&existing_key(&store.open(false)?, id)?),
        #[cfg(feature = "client")]
        Target::Remote(client) => client.show(id)?,
    };
    if json {
        write_json(out, &view)?;
    } else {
        render::key_details(out, &view)?;
    }
    Ok(exit::OK)
}

/// `verify --json`: the key's id, name and roles when valid; the reason's code when not.
#[derive(Serialize)]
struct VerifyJson<'a> {
    valid: bool,
    reason: Option<&'static str>,
    id: Option<String>,
    name: Option<&'a str>,
    roles: Vec<&'a str>,
}

fn verify(store: &Store, args: VerifyArgs, out: &mut impl Write) -> Result<u8, Failure> {
    if !args.key_on_command_line.is_empty() {
        return Err(Failure::new(
            exit::USAGE,
            "verify reads the key from standard input, never from the command line, where other \
             users and your shell history would see it: printf '%s' \"$KEY\" | keyledger verify --ip IP",
        ));
    }
    let keys = store.open(false)?;
    let secret = read_key("printf '%s' \"$KEY\" | keyledger verify --ip IP")?;
    let verdict = keys.verify(&secret, args.ip);
    if args.json {
        let answer = match &verdict {
            Ok(v) => VerifyJson {
                valid: true,
                reason: None,
                id: Some(v.id().to_string()),
                name: Some(v.name()),
                roles: v.roles().collect(),
            },
            Err(r) => VerifyJson {
                valid: false,
                reason: Some(r.code()),
                id: None,
                name: None,
                roles: Vec::new(),
            },
        };
        write_json(out, &answer)?;
    } else {
        match &verdict {
            Ok(v) => writeln!(
                out,
                "accepted: key {} \"{}\", roles: {}",
                v.id(),
                v.name(),
                v.roles().collect::<Vec<_>>().join(", ")
            )?,
            Err(r) => writeln!(out, "rejected: {r}")?,
        }
    }
    Ok(if verdict.is_ok() { exit::OK } else { exit::NO })
}

/// Reads a key from the first line of standard input; `how` shows how to give one.
fn read_key(how: &str) -> Result<Zeroizing<String>, Failure> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        let _ = write!(io::stderr(), "key: ");
        let _ = io::stderr().flush();
    }
    let mut line = Zeroizing::new(Vec::new());
    stdin
        .lock()
        .take(MAX_KEY_INPUT)
        .read_until(b'\n', &mut line)
        .map_err(|e| {
            Failure::new(
                exit::USAGE,
                format!("cannot read the key from standard input: {e}"),
            )
        })?;
    // A key that is not UTF-8 is not a key; the lossy text is rejected as malformed.
    let text = Zeroizing::new(String::from_utf8_lossy(&line).trim().to_owned());
    if text.is_empty() {
        return Err(Failure::new(
            exit::USAGE,
            format!("no key on standard input: {how}"),
        ));
    }
    Ok(text)
}

fn audit(target: &Target, args: AuditArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let filter = args.filter();
    if args.refused {
        return audit_refused(target, &filter, args.json, out);
    }
    if let Some(seq) = args.at {
        return audit_at(target, seq, args.key, args.json, out);
    }
    let entries: Vec<AuditJson> = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            if let Some(id) = filter.key {
                existing_key(&keys, id)?;
            }
            keys.audit()
                .iter()
                .filter(|e| filter.matches(e))
                .map(AuditJson::from)
                .collect()
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => client.audit(&filter)?,
    };
    let none = ("no entries match", "the log is empty");
    write_listing(
        out,
        args.json,
        &entries,
        !filter.is_empty(),
        none,
        render::audit_table,
    )
}

/// Writes `items` as JSON Lines, as a table, or as the line that says there are none
/// (`none.0` when a filter is in force, else `none.1`).
fn write_listing<T: Serialize>(
    out: &mut impl Write,
    json: bool,
    items: &[T],
    filtered: bool,
    none: (&str, &str),
    table: impl FnOnce(&[T]) -> render::Table,
) -> Result<u8, Failure> {
    if json {
        for item in items {
            write_json(out, item)?;
        }
    } else if items.is_empty() {
        writeln!(out, "{}", if filtered { none.0 } else { none.1 })?;
    } else {
        table(items).write(out, "")?;
    }
    Ok(exit::OK)
}

/// `audit --refused`: the security trail, filtered by key, actor and time.
fn audit_refused(
    target: &Target,
    filter: &AuditFilter,
    json: bool,
    out: &mut impl Write,
) -> Result<u8, Failure> {
    // A refused command may name a key that never existed: no existence check.
    let attempts: Vec<RefusedJson> = match target {
        Target::Local(store) => store
            .open(false)?
            .refused()?
            .iter()
            .filter(|a| filter.matches_refused(a))
            .map(RefusedJson::from)
            .collect(),
        #[cfg(feature = "client")]
        Target::Remote(client) => client.refused(filter)?,
    };
    let none = ("no refused attempts match", "no refused attempts");
    write_listing(
        out,
        json,
        &attempts,
        !filter.is_empty(),
        none,
        render::refused_table,
    )
}

/// `audit --at SEQ`: the keys as they stood right after record `seq`.
fn audit_at(
    target: &Target,
    seq: u64,
    only: Option<KeyId>,
    json: bool,
    out: &mut impl Write,
) -> Result<u8, Failure> {
    let (views, event): (Vec<KeyJson>, Option<AuditJson>) = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            if let Some(id) = only {
                existing_key(&keys, id)?;
            }
            let views = keys
                .keys_at(seq)?
                .iter()
                .filter(|v| only.is_none_or(|id| v.id == id))
                .map(KeyJson::from)
                .collect();
            let event = keys.audit_entry(seq).map(|e| AuditJson::from(&e));
            (views, event)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => {
            let views = client.keys_at(seq, only)?;
            let event = if json {
                None
            } else {
                let trail = client.audit(&AuditFilter::default())?;
                trail.into_iter().find(|e| e.seq == seq)
            };
            (views, event)
        }
    };
    if json {
        for view in &views {
            write_json(out, view)?;
        }
        return Ok(exit::OK);
    }
    match event {
        Some(e) => match (&e.key_id, &e.key_name) {
            (Some(id), Some(name)) => writeln!(
                out,
                "as of record {seq} ({} UTC: {} {} key {id} \"{name}\"):",
                render::human_time(&e.at),
                e.actor,
                e.kind,
            )?,
            _ => writeln!(
                out,
                "as of record {seq} ({} UTC: {} {} {}):",
                render::human_time(&e.at),
                e.actor,
                e.kind,
                e.person.as_deref().unwrap_or_default(),
            )?,
        },
        None => writeln!(out, "as of record 0, before the first record:")?,
    }
    if views.is_empty() {
        writeln!(out, "no keys")?;
    } else {
        render::keys_table(&views).write(out, "")?;
    }
    Ok(exit::OK)
}

fn check(store: &Store, out: &mut impl Write) -> Result<u8, Failure> {
    let (builder, bar) = with_progress(store.builder()?, "checking the log");
    let checked = builder.check(&store.dir);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = checked.map_err(|e| store.failed("check", e))?;
    let chain = if report.keyed {
        "keyed hash chain"
    } else {
        "hash chain"
    };
    if report.is_intact() {
        writeln!(
            out,
            "intact: {} records; sequence numbers, {chain}, sealed head, access rules and snapshot all check",
            report.records
        )?;
        return Ok(exit::OK);
    }
    let mut table = render::Table::new(vec!["SEQ", "PROBLEM", "DETAIL"]);
    for p in &report.problems {
        table.row(vec![p.seq.to_string(), p.kind.to_string(), p.detail.clone()]);
    }
    table.write(out, "")?;
    let total = report.problems.len() as u64 + report.unlisted;
    if report.unlisted > 0 {
        writeln!(out, "... and {} more", report.unlisted)?;
    }
    writeln!(
        out,
        "damaged: {total} problem{} in {} records ({chain})",
        if total == 1 { "" } else { "s" },
        report.records
    )?;
    Ok(exit::NO)
}

fn repair(store: &Store, out: &mut impl Write) -> Result<u8, Failure> {
    let report = store
        .builder()?
        .repair(&store.dir)
        .map_err(|e| store.failed("repair", e))?;
    if report.removed.is_empty() {
        writeln!(
            out,
            "nothing to repair: the log ends cleanly at record {}",
            report.last_seq
        )?;
    } else {
        let removed: Vec<String> = report.removed.iter().map(u64::to_string).collect();
        writeln!(
            out,
            "removed record{} {} (never acknowledged: past the head); the log now ends at record {}",
            if removed.len() == 1 { "" } else { "s" },
            removed.join(", "),
            report.last_seq
        )?;
    }
    Ok(exit::OK)
}

fn export(store: &Store, file: &Path, out: &mut impl Write) -> Result<u8, Failure> {
    let opened = store.open(false)?;
    let records = opened.export(file).map_err(|e| store.failed("export", e))?;
    writeln!(out, "exported {records} records to {}", file.display())?;
    Ok(exit::OK)
}

/// `head --json`.
#[derive(Serialize)]
struct HeadJson {
    seq: u64,
    hash: String,
    /// `SEQ:HASH`, as `--expect-head` takes it.
    witness: String,
    at: Option<String>,
    keyed: bool,
    integrity: &'static str,
    problem: Option<String>,
}

fn head(store: &Store, json: bool, out: &mut impl Write) -> Result<u8, Failure> {
    let keys = store.open(false)?;
    let witness = keys.head();
    let at = keys.audit_entry(witness.seq).map(|e| keyledger::rfc3339(e.at));
    let (integrity, problem) = match keys.wait_for_integrity() {
        Integrity::Verified => ("verified", None),
        Integrity::Damaged(p) => (
            "damaged",
            Some(format!("record {} ({}): {}", p.seq, p.kind, p.detail)),
        ),
        _ => ("verifying", None),
    };
    let hash: String = witness.hash.iter().map(|b| format!("{b:02x}")).collect();
    if json {
        write_json(
            out,
            &HeadJson {
                seq: witness.seq,
                hash,
                witness: witness.to_string(),
                at,
                keyed: store.chain_key_file.is_some(),
                integrity,
                problem,
            },
        )?;
    } else {
        writeln!(out, "head       {witness}")?;
        writeln!(
            out,
            "record     {}{}",
            witness.seq,
            at.map(|t| format!(" at {t}")).unwrap_or_default()
        )?;
        writeln!(
            out,
            "chain      {}",
            if store.chain_key_file.is_some() {
                "keyed"
            } else {
                "public"
            }
        )?;
        writeln!(
            out,
            "integrity  {integrity}{}",
            problem.map(|p| format!(": {p}")).unwrap_or_default()
        )?;
        writeln!(out)?;
        writeln!(
            out,
            "Keep the head outside the store; `--expect-head {witness}` then refuses a store rolled back past it."
        )?;
    }
    Ok(if integrity == "damaged" {
        exit::NO
    } else {
        exit::OK
    })
}

/// Writes a new chain key to `file`, readable by its owner only, never over an existing
/// file.
fn new_chain_key(file: &Path, out: &mut impl Write) -> Result<u8, Failure> {
    ChainKey::create_file(file).map_err(|e| match e {
        Error::Io(e) => Failure::new(
            if e.kind() == io::ErrorKind::AlreadyExists {
                exit::USAGE
            } else {
                exit::STORAGE
            },
            format!(
                "cannot create {}: {e} (an existing file or link is never overwritten)",
                file.display()
            ),
        ),
        other => other.into(),
    })?;
    writeln!(
        out,
        "wrote a new chain key to {} (mode 0600). Keep a copy somewhere safe, away from the store:\n\
         a keyed store cannot be opened, checked or restored without it.",
        file.display()
    )?;
    Ok(exit::OK)
}

fn import(store: &Store, file: &Path, out: &mut impl Write) -> Result<u8, Failure> {
    let records = store
        .builder()?
        .import(&store.dir, file)
        .map_err(|e| store.failed("import", e))?;
    writeln!(out, "imported {records} records into {}", store.dir.display())?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_exit_by_their_kind_whether_the_store_or_the_admin_api_answered() {
        let id: KeyId = "00000000000000aa".parse().unwrap();
        let store = |e: Error| Failure::from(e).code;
        assert_eq!(store(Error::KeyDeleted(id)), exit::NOT_FOUND);
        assert_eq!(store(Error::SecretKnown), exit::USAGE);
        assert_eq!(
            store(Error::NothingToRevoke {
                actor: "carol".into()
            }),
            exit::USAGE
        );
        assert_eq!(
            store(Error::ImportEntry {
                index: 2,
                source: Box::new(Error::KeyNotFound(id)),
            }),
            exit::NOT_FOUND
        );
        assert_eq!(store(Error::Closed), exit::STORAGE);
        let api = |kind: &str| Failure::from(ErrorJson::new(kind, "x")).code;
        for (kind, code) in [
            ("unauthorized", exit::DENIED),
            ("forbidden", exit::DENIED),
            ("not_found", exit::USAGE),
            ("overloaded", exit::STORAGE),
            ("timeout", exit::STORAGE),
            ("internal", exit::STORAGE),
            ("a_kind_from_a_newer_server", exit::STORAGE),
        ] {
            assert_eq!(api(kind), code, "{kind}");
        }
    }
}
