use std::io::Write as _;

use clap::{ArgMatches, CommandFactory};
use tempfile::NamedTempFile;

use super::*;
use crate::cli::Cli;

fn root() -> Command {
    Cli::command()
}

fn file(text: &str) -> NamedTempFile {
    let mut file = NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn argv(args: &[&str]) -> Vec<OsString> {
    std::iter::once("keyledger")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect()
}

/// `keyledger ARGS` as the command line parses it, with a file's settings: the matches of
/// serve, or the one-line error.
fn serve(args: &[&str]) -> Result<ArgMatches, String> {
    let merged = merge(&root(), argv(args)).map_err(|f| f.message)?;
    let given = root()
        .try_get_matches_from(&merged.argv)
        .map_err(|e| exit::clap_line(&e))?;
    Ok(given.subcommand_matches("serve").unwrap().clone())
}

/// `serve --config FILE ARGS` with `text` in the file.
fn with_file(text: &str, args: &[&str]) -> Result<ArgMatches, String> {
    let f = file(text);
    let path = f.path().to_str().unwrap();
    serve(&[&["serve", "--config", path], args].concat())
}

fn raw(matches: &ArgMatches, id: &str) -> Vec<String> {
    matches
        .get_raw(id)
        .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// A value `key`'s flag takes: one of its possible values (the last: not the default),
/// or the first of a few shapes its parser accepts.
fn sample(root: &Command, key: &Key<'_>) -> Option<String> {
    if let Some(value) = key.arg.get_possible_values().last() {
        return Some(value.get_name().to_owned());
    }
    let head = format!("1:{}", "0".repeat(64));
    let mut relaxed = relaxed(root);
    ["127.0.0.1:8080", "10.0.0.0/8", "1", "2s", head.as_str(), "x"]
        .into_iter()
        .find(|v| {
            relaxed
                .try_get_matches_from_mut(["keyledger", "serve", &format!("--{}={v}", key.name)])
                .is_ok_or_missing()
        })
        .map(str::to_owned)
}

trait OkOrMissing {
    fn is_ok_or_missing(&self) -> bool;
}

impl<T> OkOrMissing for Result<T, clap::Error> {
    fn is_ok_or_missing(&self) -> bool {
        match self {
            Ok(_) => true,
            Err(e) => e.kind() == ErrorKind::MissingRequiredArgument,
        }
    }
}

#[test]
fn every_serve_argument_is_a_key_of_the_file_and_reaches_serve() {
    let root = root();
    let serve = serve_command(&root).unwrap();
    let keys = keys(&serve);
    let mut checked = 0;
    for arg in serve.get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_KEYS.contains(&id) {
            continue;
        }
        let key = keys
            .iter()
            .find(|k| k.id() == id)
            .unwrap_or_else(|| panic!("serve's argument {id} is no key of the settings file"));
        let (line, expected) = match key.kind {
            Kind::Switch { given } => (format!("{} = {given}", key.name), given.to_string()),
            _ => {
                let v = sample(&root, key)
                    .unwrap_or_else(|| panic!("no sample value for {id}: add one to sample()"));
                let line = match key.kind {
                    Kind::Many => format!("{} = [{:?}]", key.name, v),
                    _ => format!("{} = {:?}", key.name, v),
                };
                (line, v)
            }
        };
        let f = file(&format!("{line}\n"));
        let mut args = argv(&["serve", "--config", f.path().to_str().unwrap()]);
        if id != "listen" {
            args.extend(["--listen".into(), "127.0.0.1:1".into()]);
        }
        let merged = merge(&root, args).unwrap_or_else(|f| panic!("{line}: {}", f.message));
        // What the key requires (`proxy-connections`: a trusted proxy) is not the point.
        let given = root
            .clone()
            .ignore_errors(true)
            .try_get_matches_from(&merged.argv)
            .unwrap();
        let matches = given.subcommand_matches("serve").unwrap();
        // A variable of the environment would win over the file.
        if arg.get_env().is_some_and(|var| std::env::var_os(var).is_some()) {
            continue;
        }
        assert_eq!(raw(matches, id), [expected], "{line}");
        assert_eq!(matches.value_source(id), Some(ValueSource::CommandLine), "{line}");
        checked += 1;
    }
    // serve's own, the store's global options and the fleet's: well over thirty.
    assert!(checked > 30, "{checked}");
    for id in NOT_KEYS.iter().filter(|id| !["help", "version"].contains(id)) {
        assert!(
            serve.get_arguments().any(|a| a.get_id() == *id),
            "NOT_KEYS names {id}, which serve no longer has"
        );
    }
}

#[test]
fn the_file_sets_serve_and_the_command_line_wins_key_by_key() {
    let text = "listen = \"127.0.0.1:1\"\nread-timeout = 5\ntrusted-proxy = [\"127.0.0.2\", \"10.0.0.0/8\"]\n\
                opaque-refusals = true\nlog-format = \"json\"\n";
    let m = with_file(text, &[]).unwrap();
    assert_eq!(raw(&m, "listen"), ["127.0.0.1:1"]);
    assert_eq!(raw(&m, "read_timeout"), ["5"]);
    assert_eq!(raw(&m, "trusted_proxies"), ["127.0.0.2", "10.0.0.0/8"]);
    assert_eq!(raw(&m, "opaque_refusals"), ["true"]);
    assert_eq!(raw(&m, "log_format"), ["json"]);
    let m = with_file(text, &["--listen", "127.0.0.1:2", "--trusted-proxy", "127.0.0.3"]).unwrap();
    assert_eq!(raw(&m, "listen"), ["127.0.0.1:2"]);
    assert_eq!(
        raw(&m, "trusted_proxies"),
        ["127.0.0.3"],
        "a list on the command line replaces the file's"
    );
    assert_eq!(raw(&m, "read_timeout"), ["5"]);
    // Global options before `serve` win too.
    let f = file("listen = \"127.0.0.1:1\"\ndb = \"/from/the/file\"\n");
    let path = f.path().to_str().unwrap();
    let m = serve(&["--db", "/from/the/flag", "serve", "--config", path]).unwrap();
    assert_eq!(raw(&m, "db"), ["/from/the/flag"]);
    let m = serve(&["serve", "--config", path]).unwrap();
    assert_eq!(raw(&m, "db"), ["/from/the/file"]);
}

#[test]
fn a_flag_wins_over_a_key_it_excludes() {
    let m = with_file(
        "listen = \"127.0.0.1:1\"\nlog-auth-sample = 10\n",
        &["--log-auth", "all"],
    )
    .unwrap();
    assert_eq!(raw(&m, "log_auth"), ["all"]);
    assert!(raw(&m, "log_auth_sample").is_empty());
}

#[test]
fn keys_that_exclude_each_other_are_refused_naming_both_and_their_lines() {
    let e = with_file(
        "listen = \"127.0.0.1:1\"\nlog-auth = \"all\"\n\nlog-auth-sample = 10\n",
        &[],
    )
    .unwrap_err();
    assert!(e.contains("`log-auth` (line 2)"), "{e}");
    assert!(e.contains("`log-auth-sample` (line 4)"), "{e}");
}

#[test]
fn unknown_keys_are_refused_by_name_and_line_with_a_hint() {
    let e = with_file("listen = \"127.0.0.1:1\"\n\nlistn = \"x\"\n", &[]).unwrap_err();
    assert!(
        e.contains("line 3: unknown key `listn` (did you mean `listen`?)"),
        "{e}"
    );
    let e = with_file("log_format = \"json\"\n", &["--listen", "127.0.0.1:1"]).unwrap_err();
    assert!(e.contains("did you mean `log-format`?"), "{e}");
    let e = with_file("nats-password = \"hunter2\"\n", &["--listen", "127.0.0.1:1"]).unwrap_err();
    assert!(e.contains("`nats-password-file` names one"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    for (key, value) in [
        ("config", "\"x.toml\""),
        ("print-config", "true"),
        ("server", "\"http://a\""),
    ] {
        let e = with_file(&format!("{key} = {value}\n"), &["--listen", "127.0.0.1:1"]).unwrap_err();
        assert!(e.contains(&format!("line 1: unknown key `{key}`")), "{e}");
    }
    let e = with_file("[serve]\nlisten = \"127.0.0.1:1\"\n", &[]).unwrap_err();
    assert!(e.contains("line 1: unknown key `serve`"), "{e}");
}

#[test]
fn values_of_the_wrong_type_are_refused_by_key_and_line() {
    for (text, line, words) in [
        (
            "opaque-refusals = \"yes\"",
            2,
            "`opaque-refusals` is a switch: true or false, not a string",
        ),
        (
            "read-timeout = true",
            2,
            "`read-timeout` takes a value (SECONDS), not a boolean",
        ),
        (
            "listen = [\"127.0.0.1:1\"]",
            2,
            "`listen` takes one value (ADDR), not a list",
        ),
        (
            "trusted-proxy = [[\"a\"]]",
            2,
            "`trusted-proxy` takes a list of values, not of lists",
        ),
        (
            "read-timeout = 0",
            2,
            "`read-timeout`: invalid value '0' for '--read-timeout <SECONDS>'",
        ),
        ("read-timeout = 1.5", 2, "`read-timeout`: invalid value '1.5'"),
        (
            "trusted-proxy = [\"10.0.0.1/8\"]",
            2,
            "`trusted-proxy`: invalid value '10.0.0.1/8'",
        ),
        ("log-format = \"yaml\"", 2, "`log-format`: invalid value 'yaml'"),
        ("replicas = 9", 2, "`replicas`: invalid value '9'"),
        (
            "heartbeat = 1979-05-27T07:32:00Z",
            2,
            "`heartbeat` takes a value (DURATION), not a datetime",
        ),
        ("read-timeout = ", 2, "not TOML"),
    ] {
        let e = with_file(&format!("# settings\n{text}\n"), &["--listen", "127.0.0.1:1"]).unwrap_err();
        assert!(e.contains(&format!("line {line}: {words}")), "{text}: {e}");
    }
    let e = with_file("listen = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n", &[]).unwrap_err();
    assert!(e.contains("line 2: not TOML"), "{e}");
}

#[test]
fn a_secret_where_its_files_path_belongs_is_refused_without_being_echoed() {
    let chain_key = "0123456789abcdef".repeat(4);
    let seed = format!("SUAM{}", "B".repeat(54));
    for (key, secret) in [
        ("chain-key-file", chain_key.as_str()),
        (
            "nats-creds",
            "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.c2ln\n------END NATS USER JWT------",
        ),
        ("nats-key", "-----BEGIN PRIVATE KEY-----"),
        ("nats-token-file", seed.as_str()),
        ("nats-password-file", &format!("klk_{}", "a".repeat(36))),
    ] {
        let text = format!("listen = \"127.0.0.1:1\"\n{key} = {secret:?}\n");
        let e = with_file(&text, &[]).unwrap_err();
        assert!(
            e.contains(&format!(
                "line 2: `{key}` is the path of a file, but its value looks like"
            )),
            "{e}"
        );
        assert!(
            !e.contains(secret.lines().next().unwrap().get(6..).unwrap()),
            "echoed: {e}"
        );
    }
    let e = with_file(
        "listen = \"127.0.0.1:1\"\nnats = \"nats://a:4222,nats://host:s3cret@b:4222\"\n",
        &[],
    )
    .unwrap_err();
    assert!(
        e.contains("line 2: `nats` holds a URL with a user, password or token"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
    let key = format!("klk_{}", "Z".repeat(36));
    let e = with_file(&format!("listen = \"127.0.0.1:1\"\nhost-id = \"{key}\"\n"), &[]).unwrap_err();
    assert!(
        e.contains("line 2: `host-id` holds what looks like an API key"),
        "{e}"
    );
    assert!(!e.contains(&key[4..]), "{e}");
}

#[test]
fn a_missing_or_unreadable_file_is_a_usage_error() {
    let e = merge(
        &root(),
        argv(&[
            "serve",
            "--config",
            "/no/such/keyledger.toml",
            "--listen",
            "127.0.0.1:1",
        ]),
    )
    .err()
    .unwrap();
    assert_eq!(e.code, exit::USAGE);
    assert!(
        e.message
            .contains("cannot read the settings file /no/such/keyledger.toml"),
        "{}",
        e.message
    );
    let f = file("listen = \"\u{0}\"");
    std::fs::write(f.path(), [0xff, 0xfe]).unwrap();
    let e = merge(&root(), argv(&["serve", "--config", f.path().to_str().unwrap()]))
        .err()
        .unwrap();
    assert!(e.message.contains("is not UTF-8 text"), "{}", e.message);
}

#[test]
fn commands_other_than_serve_and_serve_without_a_file_parse_as_given() {
    let args = argv(&["--db", "x", "list", "--json"]);
    assert_eq!(merge(&root(), args.clone()).unwrap().argv, args);
    let args = argv(&["serve", "--listen", "127.0.0.1:1"]);
    assert_eq!(merge(&root(), args.clone()).unwrap().argv, args);
}

/// `--print-config` of the command line `args`.
fn printed(args: &[&str]) -> String {
    let merged = merge(&root(), argv(args)).unwrap_or_else(|f| panic!("{}", f.message));
    let given = root().try_get_matches_from(&merged.argv).unwrap();
    let mut out = Vec::new();
    print(&root(), &given, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn the_printed_settings_are_every_one_in_force_and_read_back_the_same() {
    let text = "db = \"/var/lib/keyledger/store\"\nlisten = \"127.0.0.1:8080\"\n\
                trusted-proxy = [\"127.0.0.2\", \"10.0.0.0/8\"]\nlog-auth-sample = 100\n\
                host-id = \"api \\\"1\\\"\"\nlog-filter = \"info,keyledger::snapshot=warn\"\n";
    let f = file(text);
    let first = printed(&[
        "serve",
        "--config",
        f.path().to_str().unwrap(),
        "--read-timeout",
        "7",
    ]);
    for line in [
        "db = \"/var/lib/keyledger/store\"",
        "listen = \"127.0.0.1:8080\"",
        "trusted-proxy = [\"127.0.0.2\", \"10.0.0.0/8\"]",
        "read-timeout = 7",
        "max-connections = 1024",
        "opaque-refusals = false",
        "log-auth-sample = 100",
        "# log-auth = \"refused\": the default, unused with `log-auth-sample`",
        "host-id = 'api \"1\"'",
        "# nats: not set",
        "stream = \"keyledger\"",
    ] {
        assert!(first.lines().any(|l| l == line), "{line} not in:\n{first}");
    }
    let again = file(&first);
    assert_eq!(
        printed(&["serve", "--config", again.path().to_str().unwrap()]),
        first
    );
    // Every key is there, set or not.
    let serve = serve_command(&root()).unwrap();
    for key in keys(&serve) {
        assert!(
            first
                .lines()
                .any(|l| l.starts_with(&format!("{} = ", key.name))
                    || l.starts_with(&format!("# {}", key.name))),
            "{} missing:\n{first}",
            key.name
        );
    }
}

#[test]
fn the_print_redacts_credentials_and_secrets() {
    let key = format!("klk_{}", "Q".repeat(36));
    let out = printed(&[
        "serve",
        "--listen",
        "127.0.0.1:1",
        "--nats",
        "nats://host-1:s3cret@a:4222,nats://t0ken@b:4222",
        "--chain-key-file",
        &"ab".repeat(32),
        "--host-id",
        &key,
    ]);
    assert!(
        out.contains("nats = \"nats://host-1:REDACTED@a:4222,nats://REDACTED@b:4222\""),
        "{out}"
    );
    assert!(out.contains("chain-key-file = \"REDACTED\""), "{out}");
    for secret in ["s3cret", "t0ken", &"ab".repeat(32), &key] {
        assert!(!out.contains(secret), "{secret} in:\n{out}");
    }
}
