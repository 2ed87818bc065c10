//! The command-line tool: parses arguments, calls the library, renders the answers.
//!
//! Owns the contract scripts depend on: the commands, the `--json` field names, the exit
//! codes and the one-line `error:` messages. It prints a secret only once, in `create` or
//! `roll`; it reads one only from standard input or an import file, never from the command
//! line, and never repeats one it read; it redacts anything shaped like one in errors.

mod demo;
mod render;
#[cfg(feature = "serve")]
mod serve;

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keyledger::{
    Actor, ActorRole, AuditEntry, AuditFilter, AuditJson, Builder, ChainKey, ChainKeyProblem, Error,
    EventKind, ExistingKey, ImportedJson, Integrity, IpNet, KEY_PREFIX, KeyId, KeyJson, KeyStore, KeyView,
    NewKey, RefusedAttempt, RefusedJson, RollJson, Witness, redact_keys,
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
5 storage error, including a store in use by another process.

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
}

#[cfg(feature = "serve")]
const SERVE_HELP: &str = "\
The store must exist: make the first super-admin key with `create` before serving, e.g.
  keyledger create --actor root --actor-role super-admin --name root-admin --role super-admin --ip 127.0.0.1
While it serves, the store is locked: manage keys through the admin API (/v1) with an admin
key. SIGTERM or SIGINT stops accepting, finishes the requests in flight (up to 10 s) and
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

#[derive(Debug, Args)]
struct ActorArgs {
    /// Who is acting, as your own authentication established
    #[arg(long, value_name = "ID")]
    actor: String,
    /// super-admin, admin or user (a user may not manage keys)
    #[arg(long, value_name = "ROLE", value_parser = ActorRole::from_str)]
    actor_role: ActorRole,
}

impl ActorArgs {
    fn actor(&self) -> Actor {
        Actor::new(self.actor.clone(), self.actor_role)
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
    fn new_key(self) -> Result<NewKey, Failure> {
        let mut new = NewKey::new(self.name);
        for role in self.roles {
            new = new.role(role);
        }
        for net in self.ips {
            new = new.allow(net);
        }
        let expiry = match (self.expires_in, self.expires_at) {
            (Some(lifetime), _) => Some(jiff::Timestamp::now().checked_add(lifetime).map_err(|_| {
                Failure::new(
                    exit::USAGE,
                    "--expires-in reaches past the year 9999; give a shorter duration",
                )
            })?),
            (None, at) => at,
        };
        Ok(match expiry {
            Some(at) => new.expires_at(SystemTime::from(at)),
            None => new,
        })
    }
}

#[derive(Debug, Args)]
struct CreateArgs {
    #[command(flatten)]
    who: ActorArgs,
    #[command(flatten)]
    key: KeySpec,
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
    /// disabled, enabled or deleted
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let result = cli.execute(&mut out);
    let flushed = out.flush().map_err(Failure::from);
    match result.and_then(|code| flushed.map(|()| code)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => failure.report(),
    }
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
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
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
        Failure::new(exit_code(&e), e.to_string())
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

fn exit_code(e: &Error) -> u8 {
    match e {
        Error::InvalidInput { .. }
        | Error::WhitelistUnchanged { .. }
        | Error::StateUnchanged { .. }
        | Error::LastWhitelistEntry { .. }
        | Error::SecretInUse
        | Error::ChainKeyMismatch(_) => exit::USAGE,
        Error::PermissionDenied { .. } => exit::DENIED,
        Error::KeyNotFound(_) | Error::KeyDeleted(_) => exit::NOT_FOUND,
        Error::ImportEntry { source, .. } => exit_code(source),
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
        let Some(path) = &self.chain_key_file else {
            return Ok(builder);
        };
        let hex = std::fs::read_to_string(path).map(Zeroizing::new).map_err(|e| {
            Failure::new(
                exit::USAGE,
                format!("cannot read the chain key file {}: {e}", path.display()),
            )
        })?;
        let key = ChainKey::from_hex(&hex)
            .map_err(|e| Failure::from(e).context(format_args!("in {}", path.display())))?;
        Ok(builder.chain_key(key))
    }

    /// Opens the store, which must exist unless `create`: reads never create one.
    fn open(&self, create: bool) -> Result<KeyStore, Failure> {
        let (builder, bar) = with_progress(self.builder()?, "replaying the log");
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

impl Cli {
    fn execute(self, out: &mut impl Write) -> Result<u8, Failure> {
        let store = Store {
            dir: self.db,
            chain_key_file: self.chain_key_file,
            expect_head: self.expect_head,
            require_whitelist: self.require_whitelist,
        };
        match self.command {
            Command::Create(args) => create(&store, args, out),
            Command::Whitelist(args) => change_whitelist(&store, args, Change::Add, out),
            Command::Unwhitelist(args) => {
                let any = args.allow_any_address;
                change_whitelist(
                    &store,
                    args.change,
                    if any { Change::RemoveToAny } else { Change::Remove },
                    out,
                )
            }
            Command::Delete(args) => delete(&store, args, out),
            Command::Roll(args) => roll(&store, args, out),
            Command::Disable(args) => switch(&store, args, Switch::Disable, out),
            Command::Enable(args) => switch(&store, args, Switch::Enable, out),
            Command::ImportKey(args) => import_key(&store, args, out),
            Command::ImportKeys(args) => import_keys(&store, args, out),
            Command::List { all, json } => list(&store, all, json, out),
            Command::Show { key_id, json } => show(&store, key_id, json, out),
            Command::Verify(args) => verify(&store, args, out),
            Command::Audit(args) => audit(&store, args, out),
            Command::Check => check(&store, out),
            Command::Repair => repair(&store, out),
            Command::Head { json } => head(&store, json, out),
            Command::ChainKey(ChainKeyCommand::New { file }) => new_chain_key(&file, out),
            Command::Export { file } => export(&store, &file, out),
            Command::Import { file } => import(&store, &file, out),
            Command::Demo => demo::run(out),
            #[cfg(feature = "serve")]
            Command::Serve(args) => serve::run(&store, args, out),
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

const SHOWN_ONCE: &str =
    "This is the only time the key is shown: keyledger keeps only its hash. Store it now.";

fn create(store: &Store, args: CreateArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let keys = store.open(true)?;
    // After the open, which may replay a long log: --expires-in counts from the write.
    let new = args.key.new_key()?;
    let created = keys.create_key(&args.who.actor(), new)?;
    let view = existing_key(&keys, created.id)?;
    let secret = created.key.expose_secret();
    if args.json {
        write_json(out, &KeyJson::created(&view, &created.key))?;
    } else {
        writeln!(out, "created key {} \"{}\"", view.id, view.name)?;
        key_summary(out, &view)?;
        writeln!(out, "  key        {secret}")?;
        writeln!(out)?;
        writeln!(out, "{SHOWN_ONCE}")?;
    }
    Ok(exit::OK)
}

/// The lines `create` and `import-key` print under their first.
fn key_summary(out: &mut impl Write, view: &KeyView) -> io::Result<()> {
    writeln!(out, "  roles      {}", view.roles.join(", "))?;
    writeln!(out, "  whitelist  {}", render::whitelist(&view.whitelist))?;
    if let Some(at) = view.expires_at {
        writeln!(out, "  expires    {} UTC", render::human_time(at))?;
    }
    Ok(())
}

fn roll(store: &Store, args: RollArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let keys = store.open(false)?;
    let rolled = keys.roll_key(&args.key.who.actor(), args.key.key_id, args.grace)?;
    let secret = rolled.key.expose_secret();
    if args.json {
        write_json(out, &RollJson::from(&rolled))?;
        return Ok(exit::OK);
    }
    let view = existing_key(&keys, rolled.id)?;
    writeln!(out, "rolled key {} \"{}\"", view.id, view.name)?;
    writeln!(out, "  key        {secret}")?;
    if args.grace.is_zero() {
        writeln!(out, "  previous   stopped verifying at once")?;
    } else {
        writeln!(
            out,
            "  previous   verifies until {} UTC (grace {})",
            render::human_time(rolled.previous_valid_until),
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

fn switch(store: &Store, args: KeyArgs, to: Switch, out: &mut impl Write) -> Result<u8, Failure> {
    let keys = store.open(false)?;
    let actor = args.who.actor();
    match to {
        Switch::Disable => keys.disable_key(&actor, args.key_id)?,
        Switch::Enable => keys.enable_key(&actor, args.key_id)?,
    };
    let view = existing_key(&keys, args.key_id)?;
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

fn import_key(store: &Store, args: ImportKeyArgs, out: &mut impl Write) -> Result<u8, Failure> {
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
    // Checked before the open: a refused secret makes no store.
    let adopted = ExistingKey::with_secret(args.key.new_key()?, &secret)?;
    drop(secret);
    let keys = store.open(true)?;
    let ids = keys
        .import_keys(&args.who.actor(), vec![adopted])
        .map_err(|e| import_failure(e, |_| String::new()))?;
    let id = ids
        .first()
        .copied()
        .ok_or_else(|| Failure::new(exit::STORAGE, "the store adopted the key but gave no id back"))?;
    let view = existing_key(&keys, id)?;
    if args.json {
        write_json(out, &KeyJson::from(&view))?;
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

/// Reads an `import-keys` file: one key a line, the first bad line named.
fn read_import_file(path: &Path) -> Result<Vec<ExistingKey>, Failure> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::new(exit::USAGE, format!("cannot read {shown}: {e}")))?;
    keyledger::read_import_lines(io::BufReader::new(file)).map_err(|e| match e {
        Error::Io(e) => Failure::new(exit::USAGE, format!("cannot read {shown}: {e}")),
        Error::ImportEntry { .. } => {
            let mut failure = import_failure(e, |n| format!("line {n}: "));
            failure.message.push_str("; nothing was imported");
            failure
        }
        other => Failure::from(other).context(shown),
    })
}

/// The library names the bad entry of an import by its position from 1 (`key 3: ...`);
/// `entry` says how to name it here.
fn import_failure(e: Error, entry: impl Fn(usize) -> String) -> Failure {
    match e {
        Error::ImportEntry { index, source } => {
            Failure::new(exit_code(&source), format!("{}{source}", entry(index)))
        }
        other => other.into(),
    }
}

fn import_keys(store: &Store, args: ImportKeysArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let adopted = read_import_file(&args.file)?;
    let count = adopted.len();
    let keys = store.open(true)?;
    // Every line holds one key, so the library's entry N is line N.
    let ids = keys.import_keys(&args.who.actor(), adopted).map_err(|e| {
        let mut failure = import_failure(e, |n| format!("line {n}: "));
        failure.message.push_str("; nothing was imported");
        failure
    })?;
    if ids.len() != count {
        return Err(Failure::new(
            exit::STORAGE,
            format!("the store adopted {count} keys but gave back {} ids", ids.len()),
        ));
    }
    if args.json {
        for (line, id) in (1..).zip(&ids) {
            write_json(out, &ImportedJson::new(line, *id))?;
        }
        return Ok(exit::OK);
    }
    let mut table = render::Table::new(vec!["LINE", "ID", "NAME"]);
    for (line, id) in (1..).zip(&ids) {
        let name = keys.key(*id).map(|v| v.name).unwrap_or_default();
        table.row(vec![usize::to_string(&line), id.to_string(), name]);
    }
    table.write(out, "")?;
    writeln!(
        out,
        "imported {count} key{} from {} in one commit; keyledger kept only their hashes",
        if count == 1 { "" } else { "s" },
        args.file.display()
    )?;
    Ok(exit::OK)
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
    store: &Store,
    args: WhitelistArgs,
    change: Change,
    out: &mut impl Write,
) -> Result<u8, Failure> {
    let keys = store.open(false)?;
    let (actor, id) = (args.who.actor(), args.key_id);
    let nets = args.nets.iter().copied();
    match change {
        Change::Add => keys.whitelist_ip(&actor, id, nets)?,
        Change::Remove => keys.unwhitelist_ip(&actor, id, nets).map_err(|e| match e {
            Error::LastWhitelistEntry { .. } => {
                let mut failure = Failure::from(e);
                failure.message.push_str(" (pass --allow-any-address to mean it)");
                failure
            }
            other => other.into(),
        })?,
        Change::RemoveToAny => keys.unwhitelist_ip_allowing_any_address(&actor, id, nets)?,
    };
    let view = existing_key(&keys, id)?;
    writeln!(
        out,
        "{} {} on key {id} \"{}\"; its whitelist is now: {}",
        if change == Change::Add {
            "whitelisted"
        } else {
            "unwhitelisted"
        },
        render::whitelist(&args.nets),
        view.name,
        render::whitelist(&view.whitelist)
    )?;
    Ok(exit::OK)
}

fn delete(store: &Store, args: KeyArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let keys = store.open(false)?;
    keys.delete_key(&args.who.actor(), args.key_id)?;
    let view = existing_key(&keys, args.key_id)?;
    writeln!(
        out,
        "deleted key {} \"{}\"; it no longer verifies",
        view.id, view.name
    )?;
    Ok(exit::OK)
}

fn list(store: &Store, all: bool, json: bool, out: &mut impl Write) -> Result<u8, Failure> {
    let keys = store.open(false)?;
    let views = if all { keys.all_keys() } else { keys.keys() };
    if json {
        for view in &views {
            write_json(out, &KeyJson::from(view))?;
        }
    } else if views.is_empty() {
        writeln!(out, "{}", if all { "no keys" } else { "no live keys" })?;
    } else {
        render::keys_table(&views).write(out, "")?;
    }
    Ok(exit::OK)
}

fn show(store: &Store, id: KeyId, json: bool, out: &mut impl Write) -> Result<u8, Failure> {
    let keys = store.open(false)?;
    let view = existing_key(&keys, id)?;
    if json {
        write_json(out, &KeyJson::from(&view))?;
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

fn audit(store: &Store, args: AuditArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let keys = store.open(false)?;
    if args.refused {
        // A refused command may name a key that never existed: no existence check.
        return audit_refused(&keys, &args, out);
    }
    if let Some(id) = args.key {
        existing_key(&keys, id)?;
    }
    if let Some(seq) = args.at {
        return audit_at(&keys, seq, args.key, args.json, out);
    }
    let filter = args.filter();
    let entries: Vec<AuditEntry> = keys.audit().into_iter().filter(|e| filter.matches(e)).collect();
    if args.json {
        for entry in &entries {
            write_json(out, &AuditJson::from(entry))?;
        }
    } else if entries.is_empty() {
        writeln!(
            out,
            "{}",
            if !filter.is_empty() {
                "no entries match"
            } else {
                "the log is empty"
            }
        )?;
    } else {
        render::audit_table(&entries).write(out, "")?;
    }
    Ok(exit::OK)
}

/// `audit --refused`: the security trail, filtered by key, actor and time.
fn audit_refused(keys: &KeyStore, args: &AuditArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let filter = args.filter();
    let attempts: Vec<RefusedAttempt> = keys
        .refused()?
        .into_iter()
        .filter(|a| filter.matches_refused(a))
        .collect();
    if args.json {
        for attempt in &attempts {
            write_json(out, &RefusedJson::from(attempt))?;
        }
    } else if attempts.is_empty() {
        writeln!(
            out,
            "{}",
            if !filter.is_empty() {
                "no refused attempts match"
            } else {
                "no refused attempts"
            }
        )?;
    } else {
        render::refused_table(&attempts).write(out, "")?;
    }
    Ok(exit::OK)
}

/// `audit --at SEQ`: the keys as they stood right after record `seq`.
fn audit_at(
    keys: &KeyStore,
    seq: u64,
    only: Option<KeyId>,
    json: bool,
    out: &mut impl Write,
) -> Result<u8, Failure> {
    let views: Vec<KeyView> = keys
        .keys_at(seq)?
        .into_iter()
        .filter(|v| only.is_none_or(|id| v.id == id))
        .collect();
    if json {
        for view in &views {
            write_json(out, &KeyJson::from(view))?;
        }
        return Ok(exit::OK);
    }
    let event = usize::try_from(seq)
        .ok()
        .and_then(|s| s.checked_sub(1))
        .and_then(|i| keys.audit().into_iter().nth(i));
    match event {
        Some(e) => writeln!(
            out,
            "as of record {seq} ({} UTC: {} {} key {} \"{}\"):",
            render::human_time(e.at),
            e.actor.id(),
            e.kind,
            e.key_id,
            e.key_name
        )?,
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
    let hex = Zeroizing::new(ChainKey::generate_hex()?);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(file).map_err(|e| {
        let code = if e.kind() == io::ErrorKind::AlreadyExists {
            exit::USAGE
        } else {
            exit::STORAGE
        };
        Failure::new(
            code,
            format!(
                "cannot create {}: {e} (an existing key file is never overwritten)",
                file.display()
            ),
        )
    })?;
    f.write_all(hex.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
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
