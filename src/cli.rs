//! The command-line tool: parses arguments, calls the library (or, with `--server`, a
//! running `keyledger serve`), renders the answers.
//!
//! Owns the contract scripts depend on: the commands, the `--json` field names, the exit
//! codes and the one-line `error:` messages, the same whether a key command runs on the
//! store or through `--server`. It prints a secret only once, in `create` or `roll`; it
//! reads one only from standard input or a file, never from the command line, and never
//! repeats one it read (nor the admin key of `--server`); it redacts anything shaped like
//! one in errors.
//!
//! This file is the top of the argument schema (`Cli`, `Command`: every command, with its
//! help) and the dispatch: it parses the command line, decides where the command goes (the
//! store here, or `--server`) and hands it to its group, doing none of a command's work
//! itself beyond the helpers every group shares (`write_json`, `existing_key`, `read_key`).
//! The arguments each command takes are in `args`, the exit codes and `Failure` in `exit`,
//! opening the store in `store`, the commands in `keys`, `audit`, `verify`, `maintenance`,
//! `actors`, `usage`, `serve`, `fleet` and `demo`, human output in `render`, `--server` in `client`,
//! `serve`'s log lines in `logging`, its settings file (`--config`, `--print-config`) in
//! `config`.

pub(crate) mod actors;
pub(crate) mod args;
pub(crate) mod audit;
#[cfg(feature = "client")]
pub(crate) mod client;
#[cfg(feature = "serve")]
pub(crate) mod config;
pub(crate) mod credits;
pub(crate) mod demo;
pub(crate) mod exit;
#[cfg(feature = "nats")]
pub(crate) mod fleet;
pub(crate) mod keys;
#[cfg(feature = "serve")]
pub(crate) mod logging;
pub(crate) mod maintenance;
pub(crate) mod render;
#[cfg(feature = "serve")]
pub(crate) mod serve;
pub(crate) mod store;
pub(crate) mod update;
pub(crate) mod usage;
pub(crate) mod verify;

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use keyledger::{Error, KeyId, KeyStore, KeyView, Witness};
use serde::Serialize;
use zeroize::Zeroizing;

use args::{
    AuditArgs, CreateArgs, CreditsArgs, ImportKeyArgs, ImportKeysArgs, KeyArgs, LimitArgs, RollArgs,
    UnwhitelistArgs, VerifyArgs, WhitelistArgs, key_id_arg, witness_arg,
};
use exit::Failure;
use keys::{Change, Switch};
use store::Store;

const AFTER_HELP: &str = "\
Exit codes: 0 success (verify accepted, check intact); 1 verify rejected or check found a
problem; 2 usage error or invalid input; 3 permission denied; 4 key not found or deleted;
5 storage error, including a store in use by another process (or, with --server, a server
that cannot be reached).

While `keyledger serve` holds the store, send the key commands (create, whitelist,
unwhitelist, delete, roll, disable, enable, limit, revoke-actor, import-key, import-keys,
list, show, usage, audit) to it: --server URL (or KEYLEDGER_SERVER), with an admin key in
KEYLEDGER_API_KEY or --api-key-file FILE, and without --actor or --actor-role.

New here? Run `keyledger demo`.";

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
    /// Set a key's rate limits (--rate-limit, repeatable), replacing its own, or remove them (--no-rate-limit)
    #[command(after_help = LIMIT_HELP)]
    Limit(LimitArgs),
    /// Change a key's name, roles, external id or metadata: only what is given changes
    Update(update::UpdateArgs),
    /// Set a key's credits (--set N [--refill AMOUNT/PERIOD]), add to them (--add N) or remove them (--remove)
    #[command(after_help = CREDITS_HELP)]
    Credits(CreditsArgs),
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
        /// At most N keys, the oldest first (default: every one)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Only the keys with this external id
        #[arg(long, value_name = "ID")]
        external_id: Option<String>,
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
    /// A key's requests per hour (or UTC day): accepted, and refused by reason
    Usage(usage::UsageArgs),
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
    Serve(Box<serve::ServeArgs>),
    /// The hosts of a fleet (--nats): each one's head, lag and state, read from the shared log
    #[cfg(feature = "nats")]
    Fleet(fleet::FleetStatusArgs),
}

const LIMIT_HELP: &str = "\
A limit is LIMIT/WINDOW: at most LIMIT verifications per WINDOW, a number and a unit (s, m,
h or d; from 1s to 30d). A key holds up to 4, each on another window; the key's buckets
start full again when they change:
  keyledger limit KEY_ID --actor alice --actor-role admin --rate-limit 20/1s --rate-limit 1000/1h
  keyledger limit KEY_ID --actor alice --actor-role admin --no-rate-limit
The rules are those of whitelist: an admin changes the keys they created, a super admin any.";

const CREDITS_HELP: &str = "\
Each accepted verification spends one credit (or the cost the host names: /auth?cost=N,
verify --cost N); a key with none left is refused as usage_exceeded until a refill or more
credits. A refill brings the count back up to AMOUNT every PERIOD (1m to 366d), counted
from when the credits were set:
  keyledger credits KEY_ID --actor alice --actor-role admin --set 10000 --refill 10000/30d
  keyledger credits KEY_ID --actor alice --actor-role admin --add 500
  keyledger credits KEY_ID --actor alice --actor-role admin --remove
What was spent is saved beside the log every second: a crash may forget up to the last
second's spending. The rules are those of whitelist: an admin changes the keys they
created, a super admin any.";

const IMPORT_KEYS_HELP: &str = "\
Each line of FILE is one JSON object, one key:
  {\"name\": \"legacy bot\", \"roles\": [\"bot\"], \"ips\": [\"10.0.0.0/8\"], \"expires_at\": \"2027-01-01T00:00:00Z\", \"key\": \"SECRET\"}
  {\"name\": \"old sync\", \"roles\": [\"sync\"], \"sha256\": \"<64 lowercase hex digits of SHA-256(SECRET)>\",
   \"rate_limits\": [{\"limit\": 100, \"window\": \"1m\"}]}
\"ips\", \"expires_at\" and \"rate_limits\" (up to 4, as create's --rate-limit 100/1m) are
optional; exactly one of \"key\" and \"sha256\" is required; any other field, and a blank
line, is refused. The first bad line is named (line N) and nothing
is imported. At most 1,000,000 lines and 256 MiB.";

#[cfg(feature = "serve")]
const SERVE_HELP: &str = "\
Settings may come from a TOML file, `--config FILE`, whose keys are these flags without their
dashes (`listen = \"127.0.0.1:8080\"`, `trusted-proxy = [\"127.0.0.2\"]`, `db = \"/var/lib/keyledger/store\"`);
the command line, then the environment, win over it, key by key; `--print-config` prints the
settings in force as such a file.
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

/// Runs the command line and returns the exit code of the contract.
pub(crate) fn run() -> ExitCode {
    let (cli, given) = match parse() {
        Ok(parsed) => parsed,
        Err(code) => return code,
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
/// line or the environment, decides which rules the rest is parsed by. `serve --config
/// FILE` joins the file's settings behind the command line's. A failure is reported here.
fn parse() -> Result<(Cli, ArgMatches), ExitCode> {
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
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    #[cfg(feature = "serve")]
    let given = {
        let merged = config::merge(&command, argv).map_err(Failure::report)?;
        command
            .clone()
            .try_get_matches_from(&merged.argv)
            .map_err(|e| merged.failed(&command, &e))?
    };
    #[cfg(not(feature = "serve"))]
    let given = command
        .try_get_matches_from(argv)
        .map_err(|e| exit::clap_exit(&e))?;
    let cli = Cli::from_arg_matches(&given).map_err(|e| exit::clap_exit(&e))?;
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
                | Command::Limit(_)
                | Command::Update(_)
                | Command::Credits(_)
                | Command::RevokeActor(_)
                | Command::ImportKey(_)
                | Command::ImportKeys(_)
                | Command::List { .. }
                | Command::Show { .. }
                | Command::Usage(_)
                | Command::Audit(_)
        )
    }

    /// Who acts, for a command that changes keys.
    #[cfg(feature = "client")]
    fn actor_args(&self) -> Option<&args::ActorArgs> {
        match self {
            Command::Create(args) => Some(&args.who),
            Command::Whitelist(args) => Some(&args.who),
            Command::Unwhitelist(args) => Some(&args.change.who),
            Command::Delete(args) | Command::Disable(args) | Command::Enable(args) => Some(&args.who),
            Command::Roll(args) => Some(&args.key.who),
            Command::Limit(args) => Some(&args.key.who),
            Command::Update(args) => Some(&args.key.who),
            Command::Credits(args) => Some(&args.key.who),
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
    if cli.command.actor_args().is_some_and(args::ActorArgs::given) {
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
            Command::Create(args) => keys::create(&target, args, out),
            Command::Whitelist(args) => keys::change_whitelist(&target, args, Change::Add, out),
            Command::Unwhitelist(args) => {
                let any = args.allow_any_address;
                keys::change_whitelist(
                    &target,
                    args.change,
                    if any { Change::RemoveToAny } else { Change::Remove },
                    out,
                )
            }
            Command::Delete(args) => keys::delete(&target, args, out),
            Command::Roll(args) => keys::roll(&target, args, out),
            Command::Disable(args) => keys::switch(&target, args, Switch::Disable, out),
            Command::Enable(args) => keys::switch(&target, args, Switch::Enable, out),
            Command::Limit(args) => keys::limit(&target, args, out),
            Command::Update(args) => update::update(&target, args, out),
            Command::Credits(args) => credits::credits(&target, args, out),
            Command::RevokeActor(args) => actors::revoke(&target, args, out),
            Command::ImportKey(args) => keys::import_key(&target, args, out),
            Command::ImportKeys(args) => keys::import_keys(&target, args, out),
            Command::List {
                all,
                external_id,
                limit,
                json,
            } => keys::list(
                &target,
                all,
                external_id.as_deref(),
                limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                json,
                out,
            ),
            Command::Show { key_id, json } => keys::show(&target, key_id, json, out),
            Command::Usage(args) => usage::usage(&target, args, out),
            Command::Audit(args) => audit::audit(&target, args, out),
            Command::Verify(args) => verify::verify(&store, args, out),
            Command::Check => maintenance::check(&store, out),
            Command::Repair => maintenance::repair(&store, out),
            Command::Head { json } => maintenance::head(&store, json, out),
            Command::ChainKey(ChainKeyCommand::New { file }) => maintenance::new_chain_key(&file, out),
            Command::Export { file } => maintenance::export(&store, &file, out),
            Command::Import { file } => maintenance::import(&store, &file, out),
            Command::Demo => demo::run(out),
            #[cfg(feature = "serve")]
            Command::Serve(args) if args.prints_config() => {
                config::print(&Cli::command(), given, out).map(|()| exit::OK)
            }
            #[cfg(feature = "serve")]
            Command::Serve(args) => serve::run(&store, *args, out),
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

/// Most bytes `verify` and `import-key` read from standard input: a key and its line
/// ending, with room.
const MAX_KEY_INPUT: u64 = 1024;

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
