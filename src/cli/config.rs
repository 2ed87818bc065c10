//! `serve --config FILE`: serve's settings in a TOML file, a key for each of serve's flags,
//! spelled as the flag without its dashes (`listen = "127.0.0.1:8080"`, `trusted-proxy =
//! ["127.0.0.2"]`, `opaque-refusals = true`). The keys are read off clap's own definition of
//! `serve` and every value goes through its flag's own parser, so a flag added to serve is
//! a key with nothing to add here. The file's settings join the command line behind it: a
//! flag given on the command line or from the environment wins, key by key. Every error
//! names the key and its line and exits 2. It reads and checks the file (and, in
//! `effective`, prints the settings in force); it never opens a store nor serves.

mod effective;
mod secret;

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::builder::ValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command};
use toml::de::{DeTable, DeValue};

pub(super) use effective::print;

use super::exit::{self, Failure};

/// serve's arguments that are not settings: the file itself and what prints it, clap's
/// own, and the key commands' client options (`--server` and its admin key), which serve
/// refuses.
const NOT_KEYS: &[&str] = &[
    "config",
    "print_config",
    "help",
    "version",
    "server",
    "api_key_file",
];

/// Most bytes read from a settings file: a few kilobytes is a long one.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// How the file gives a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `true` or `false`; the flag is passed when the value is `given`.
    Switch { given: bool },
    /// One value: a string or a number.
    One,
    /// A repeatable flag: a list of values (or one).
    Many,
}

/// One of serve's settings: the argument it sets, and how the file gives it.
#[derive(Debug, Clone, Copy)]
struct Key<'c> {
    arg: &'c Arg,
    name: &'c str,
    kind: Kind,
}

impl Key<'_> {
    fn id(&self) -> &str {
        self.arg.get_id().as_str()
    }

    /// Whether the value is a file's path (where a secret must not be given itself).
    fn is_path(&self) -> bool {
        self.arg.get_value_parser().type_id() == ValueParser::path_buf().type_id()
    }
}

fn kind(arg: &Arg) -> Option<Kind> {
    match arg.get_action() {
        ArgAction::SetTrue => Some(Kind::Switch { given: true }),
        ArgAction::SetFalse => Some(Kind::Switch { given: false }),
        ArgAction::Set => Some(Kind::One),
        ArgAction::Append => Some(Kind::Many),
        _ => None,
    }
}

/// `serve` as clap builds it: its own arguments, then the global ones (`--db`, ...).
fn serve_command(root: &Command) -> Option<Command> {
    let mut root = root.clone();
    root.build();
    root.find_subcommand("serve").cloned()
}

/// The settings: every argument of `serve` (built) but [`NOT_KEYS`], the store's global
/// options first.
fn keys(serve: &Command) -> Vec<Key<'_>> {
    let mut keys: Vec<Key<'_>> = serve
        .get_arguments()
        .filter(|arg| !NOT_KEYS.contains(&arg.get_id().as_str()))
        .filter_map(|arg| {
            Some(Key {
                arg,
                name: arg.get_long()?,
                kind: kind(arg)?,
            })
        })
        .collect();
    keys.sort_by_key(|key| !key.arg.is_global_set());
    keys
}

/// A key of the file, checked: the flags it stands for and the line it is on.
#[derive(Debug)]
struct Setting {
    id: String,
    name: String,
    line: usize,
    args: Vec<OsString>,
}

/// The command line to parse: as given, or with the file's settings joined behind it.
pub(super) struct Merged {
    pub(super) argv: Vec<OsString>,
    /// The file, and the settings of it that joined the command line.
    from: Option<(PathBuf, Vec<Setting>)>,
}

impl Merged {
    /// The failure of `root` parsing [`argv`](Self::argv): clap's, naming the file's lines
    /// when settings from the file are part of it: named by the error, or requiring what
    /// it says is missing.
    pub(super) fn failed(&self, root: &Command, e: &clap::Error) -> ExitCode {
        let Some((path, settings)) = &self.from else {
            return exit::clap_exit(e);
        };
        let named = flags_named(e);
        let mut ours: Vec<&Setting> = settings.iter().filter(|s| named.contains(&s.name)).collect();
        if ours.is_empty() && e.kind() == ErrorKind::MissingRequiredArgument {
            ours = settings
                .iter()
                .filter(|s| {
                    let without: Vec<&OsString> = self.argv.iter().filter(|a| !s.args.contains(a)).collect();
                    match root.clone().try_get_matches_from(without) {
                        Ok(_) => true,
                        Err(other) => !flags_named(&other).iter().any(|flag| named.contains(flag)),
                    }
                })
                .collect();
        }
        if ours.is_empty() || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
            return exit::clap_exit(e);
        }
        let lines: Vec<String> = ours
            .iter()
            .map(|s| format!("line {} sets `{}`", s.line, s.name))
            .collect();
        let message = format!(
            "{} ({}: {}; see --help)",
            exit::clap_line(e),
            path.display(),
            lines.join(", ")
        );
        Failure::new(exit::USAGE, message).report()
    }
}

/// `argv` with the settings of `serve --config FILE` joined behind the command line; `argv`
/// as it is for any other command, or without `--config`.
///
/// # Errors
/// A file that cannot be read or is not TOML, an unknown key, a value of the wrong type or
/// that its flag's parser refuses, a secret where a file's path belongs, credentials in a
/// URL, two settings that exclude each other: a usage error naming the key and its line.
pub(super) fn merge(root: &Command, argv: Vec<OsString>) -> Result<Merged, Failure> {
    // Every other command line skips the parse below.
    let names_a_file = |a: &OsString| {
        a.to_str()
            .is_some_and(|a| a == "--config" || a.starts_with("--config="))
    };
    if !argv.iter().any(names_a_file) {
        return Ok(Merged { argv, from: None });
    }
    // What the command line (and the environment) says, whatever else is wrong with it:
    // the real parse below reports that.
    let Ok(given) = root.clone().ignore_errors(true).try_get_matches_from(&argv) else {
        return Ok(Merged { argv, from: None });
    };
    let Some(path) = given
        .subcommand_matches("serve")
        .and_then(|serve| serve.get_one::<PathBuf>("config"))
        .cloned()
    else {
        return Ok(Merged { argv, from: None });
    };
    let Some(serve) = serve_command(root) else {
        return Ok(Merged { argv, from: None });
    };
    let keys = keys(&serve);
    let text = read(&path)?;
    let settings = settings(&text, &keys).map_err(|e| e.at(&path))?;
    check_together(root, &settings).map_err(|e| e.at(&path))?;
    let explicit: Vec<&Arg> = given
        .subcommand_matches("serve")
        .map(|matches| {
            keys.iter()
                .filter(|key| {
                    matches!(
                        matches.value_source(key.id()),
                        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                    )
                })
                .map(|key| key.arg)
                .collect()
        })
        .unwrap_or_default();
    // A flag wins over its key, and over a key it excludes (`--log-auth all` over
    // `log-auth-sample`): the file's setting steps aside.
    let joined: Vec<Setting> = settings
        .into_iter()
        .filter(|s| {
            let Some(arg) = keys.iter().find(|key| key.id() == s.id).map(|key| key.arg) else {
                return false;
            };
            !explicit
                .iter()
                .any(|flag| flag.get_id() == arg.get_id() || excludes(&serve, flag, arg))
        })
        .collect();
    Ok(Merged {
        argv: splice(argv, joined.iter().flat_map(|s| s.args.iter().cloned())),
        from: Some((path, joined)),
    })
}

/// The file's flags go where clap reads serve's: after the command line's own, and
/// before a `--`, past which nothing is a flag.
fn splice(mut argv: Vec<OsString>, flags: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let at = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    let tail = argv.split_off(at);
    argv.extend(flags);
    argv.extend(tail);
    argv
}

/// Whether `a` and `b` may not be given together.
fn excludes(serve: &Command, a: &Arg, b: &Arg) -> bool {
    serve
        .get_arg_conflicts_with(a)
        .iter()
        .any(|c| c.get_id() == b.get_id())
        || serve
            .get_arg_conflicts_with(b)
            .iter()
            .any(|c| c.get_id() == a.get_id())
}

fn read(path: &Path) -> Result<String, Failure> {
    let cannot = |e: std::io::Error| {
        Failure::new(
            exit::USAGE,
            format!("cannot read the settings file {}: {e}", path.display()),
        )
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    // It decides who may sign in as an admin (`admin-user`) and where the store is: a file
    // that others may change is refused, as a secret file others may read is.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(cannot)?.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "the settings file {} may be changed by other users (mode {:o}): chmod go-w it",
                    path.display(),
                    mode & 0o777
                ),
            ));
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Failure::new(
            exit::USAGE,
            format!("the settings file {} is over 1 MiB", path.display()),
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        Failure::new(
            exit::USAGE,
            format!("the settings file {} is not UTF-8 text", path.display()),
        )
    })
}

/// What is wrong with the file, and on which line.
#[derive(Debug)]
struct Problem {
    line: usize,
    message: String,
}

impl Problem {
    fn new(text: &str, at: usize, message: impl Into<String>) -> Self {
        Problem {
            line: line_of(text, at),
            message: message.into(),
        }
    }

    fn at(self, path: &Path) -> Failure {
        Failure::new(
            exit::USAGE,
            format!("{} line {}: {}", path.display(), self.line, self.message),
        )
    }
}

/// The 1-based line of the byte at `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Every key of the file, checked alone: known, of its type, no secret where a path
/// belongs, no credentials in a URL; in the order of the file.
fn settings(text: &str, keys: &[Key<'_>]) -> Result<Vec<Setting>, Problem> {
    let table = DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |span| span.start);
        Problem::new(text, at, format!("not TOML: {}", e.message()))
    })?;
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(name, _)| name.span().start);
    let mut settings = Vec::new();
    for (name, value) in entries {
        let at = name.span().start;
        let Some(key) = keys.iter().find(|key| key.name == name.get_ref().as_ref()) else {
            return Err(Problem::new(text, at, unknown(name.get_ref(), keys)));
        };
        let values = values(text, key, value)?;
        for (value, at) in &values {
            refuse_secrets(key, value).map_err(|message| Problem::new(text, *at, message))?;
        }
        let args = match key.kind {
            Kind::Switch { given } => {
                let on = values.first().is_some_and(|(v, _)| v == "true");
                if on == given {
                    vec![OsString::from(format!("--{}", key.name))]
                } else {
                    Vec::new()
                }
            }
            Kind::One | Kind::Many => values
                .iter()
                .map(|(v, _)| OsString::from(format!("--{}={v}", key.name)))
                .collect(),
        };
        settings.push(Setting {
            id: key.id().to_owned(),
            name: key.name.to_owned(),
            line: line_of(text, at),
            args,
        });
    }
    Ok(settings)
}

/// The values a key gives, as its flag takes them, each with where it is in the file.
fn values(
    text: &str,
    key: &Key<'_>,
    value: &toml::Spanned<DeValue<'_>>,
) -> Result<Vec<(String, usize)>, Problem> {
    let at = value.span().start;
    let wrong = |what: &str| {
        Problem::new(
            text,
            at,
            format!("`{}` {what}, not {}", key.name, a(value.get_ref())),
        )
    };
    match (key.kind, value.get_ref()) {
        (Kind::Switch { .. }, DeValue::Boolean(on)) => Ok(vec![(on.to_string(), at)]),
        (Kind::Switch { .. }, _) => Err(wrong("is a switch: true or false")),
        (Kind::Many, DeValue::Array(items)) => items
            .iter()
            .map(|item| {
                let at = item.span().start;
                scalar(item.get_ref()).map(|v| (v, at)).ok_or_else(|| {
                    Problem::new(
                        text,
                        at,
                        format!(
                            "`{}` takes a list of values, not of {}",
                            key.name,
                            plural(item.get_ref())
                        ),
                    )
                })
            })
            .collect(),
        (Kind::One, DeValue::Array(_)) => Err(wrong(&format!("takes one value ({})", value_name(key)))),
        (Kind::One | Kind::Many, value) => scalar(value)
            .map(|v| vec![(v, at)])
            .ok_or_else(|| wrong(&format!("takes a value ({})", value_name(key)))),
    }
}

/// A string or a number, as a flag's value on the command line.
fn scalar(value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(n) => i128::from_str_radix(n.as_str(), n.radix())
            .ok()
            .map(|n| n.to_string()),
        // A number the flag's parser takes or refuses in its own words (`1.5` seconds).
        DeValue::Float(x) => Some(x.as_str().to_owned()),
        _ => None,
    }
}

fn a(value: &DeValue<'_>) -> String {
    match value {
        DeValue::Integer(_) => "an integer".into(),
        DeValue::Array(_) => "a list".into(),
        other => format!("a {}", other.type_str()),
    }
}

fn plural(value: &DeValue<'_>) -> String {
    match value {
        DeValue::Array(_) => "lists".into(),
        other => format!("{}s", other.type_str()),
    }
}

fn value_name(key: &Key<'_>) -> String {
    key.arg
        .get_value_names()
        .and_then(|names| names.first())
        .map_or_else(|| "VALUE".to_owned(), ToString::to_string)
}

/// A secret given where the path of the file holding it belongs, or credentials in a URL:
/// a settings file is read by more than the service's user. Never quotes the value.
fn refuse_secrets(key: &Key<'_>, value: &str) -> Result<(), String> {
    if key.is_path()
        && let Some(what) = secret::shape(value)
    {
        return Err(format!(
            "`{}` is the path of a file, but its value looks like {what} itself: put the \
             secret in a file only keyledger's user may read (mode 0600) and give that \
             file's path",
            key.name
        ));
    }
    if keyledger::redact_keys(value) != value {
        return Err(format!(
            "`{}` holds what looks like an API key: a key is never a setting",
            key.name
        ));
    }
    if secret::has_credentials(value) {
        return Err(format!(
            "`{}` holds a URL with a user, password or token in it: keep credentials out of \
             the settings file and give them from files (for NATS: `nats-user` with \
             `nats-password-file`, `nats-token-file` or `nats-creds`)",
            key.name
        ));
    }
    Ok(())
}

/// Why a key is not one, and which it may have meant.
fn unknown(name: &str, keys: &[Key<'_>]) -> String {
    let hint = if keys.iter().any(|k| k.name == format!("{name}-file")) {
        format!(" (secrets are read from files: `{name}-file` names one)")
    } else if let Some(close) = keys
        .iter()
        .map(|k| (distance(name, k.name), k.name))
        .filter(|(d, _)| *d <= 2)
        .min()
    {
        format!(" (did you mean `{}`?)", close.1)
    } else if ["config", "print-config"].contains(&name) {
        " (it is given on the command line only)".to_owned()
    } else if ["server", "api-key-file"].contains(&name) {
        " (it is the key commands' option for reaching a server, not serve's)".to_owned()
    } else {
        String::new()
    };
    format!(
        "unknown key `{name}`{hint}; the keys are serve's flags without their dashes (see \
         `keyledger serve --help`)"
    )
}

/// Levenshtein distance, for a typo's suggestion.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// `root` with nothing required of `serve`, to check settings that are not all there.
fn relaxed(root: &Command) -> Command {
    root.clone().mut_subcommand("serve", |serve| {
        let required: Vec<String> = serve
            .get_arguments()
            .filter(|arg| arg.is_required_set())
            .map(|arg| arg.get_id().to_string())
            .collect();
        required
            .into_iter()
            .fold(serve, |serve, id| serve.mut_arg(id, |arg| arg.required(false)))
    })
}

/// Each setting through its flag's own parser, then all of them at once for settings that
/// exclude each other. What one requires may come from the command line: the parse of the
/// whole command line checks that.
fn check_together(root: &Command, settings: &[Setting]) -> Result<(), Problem> {
    let mut relaxed = relaxed(root);
    let mut parse = |args: &mut dyn Iterator<Item = &OsString>| {
        let argv = [OsStr::new("keyledger"), OsStr::new("serve")]
            .into_iter()
            .chain(args.map(OsString::as_os_str));
        match relaxed.try_get_matches_from_mut(argv) {
            Err(e) if e.kind() != ErrorKind::MissingRequiredArgument => Err(e),
            _ => Ok(()),
        }
    };
    for setting in settings {
        parse(&mut setting.args.iter()).map_err(|e| Problem {
            line: setting.line,
            message: format!("`{}`: {}", setting.name, exit::clap_line(&e)),
        })?;
    }
    parse(&mut settings.iter().flat_map(|s| s.args.iter())).map_err(|e| {
        let named = flags_named(&e);
        let ours: Vec<&Setting> = settings.iter().filter(|s| named.contains(&s.name)).collect();
        let lines: Vec<String> = ours
            .iter()
            .map(|s| format!("`{}` (line {})", s.name, s.line))
            .collect();
        Problem {
            line: ours.first().map_or(1, |s| s.line),
            message: format!("{}: {}", lines.join(" and "), exit::clap_line(&e)),
        }
    })
}

/// The long flags a clap error names (`--log-auth <WHICH>` is `log-auth`).
fn flags_named(e: &clap::Error) -> Vec<String> {
    let mut named = Vec::new();
    for (kind, value) in e.context() {
        if !matches!(kind, ContextKind::InvalidArg | ContextKind::PriorArg) {
            continue;
        }
        let texts = match value {
            ContextValue::String(s) => vec![s.clone()],
            ContextValue::Strings(all) => all.clone(),
            _ => Vec::new(),
        };
        for text in texts {
            if let Some(flag) = text.strip_prefix("--") {
                let end = flag.find([' ', '=', '<']).unwrap_or(flag.len());
                named.push(flag[..end].to_owned());
            }
        }
    }
    named
}

#[cfg(test)]
mod tests;
