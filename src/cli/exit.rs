//! The exit codes scripts branch on, and `Failure`: why a command failed, as its exit code
//! and the one-line `error:` message (clap's own errors included). One mapping from an
//! error's kind to its code, so that a command exits alike on the store and through
//! `--server`. It prints nothing but that line, on standard error, with anything shaped like
//! a secret redacted; it never decides what a command does.

use std::io::{self, Write};
use std::process::ExitCode;

use keyledger::{Error, ErrorJson, redact_keys};

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

pub(super) fn clap_exit(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(USAGE))
        }
        _ => Failure::new(USAGE, clap_message(e)).report(),
    }
}

/// clap's error as one line, pointing at `--help`.
fn clap_message(e: &clap::Error) -> String {
    let mut message = clap_line(e);
    message.push_str(" (see --help)");
    message
}

/// clap's error as one line: its first paragraph, with the usage and tips left out.
pub(super) fn clap_line(e: &clap::Error) -> String {
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
    message
}

/// Why a command failed, and the exit code that says so.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) code: u8,
    /// Empty when there is nothing to say (the reader of standard output went away).
    pub(super) message: String,
    /// The error of the store or of the admin API it came from, in the API's words: what
    /// a command branches on, alike on the store and through `--server`.
    pub(super) cause: Option<Box<ErrorJson>>,
}

impl Failure {
    pub(super) fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            cause: None,
        }
    }

    /// The kind of error it came from ([`Error::code`], or one of the admin API's own).
    pub(super) fn kind(&self) -> Option<&str> {
        self.cause.as_deref().map(|c| c.error.as_str())
    }

    pub(super) fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub(super) fn report(self) -> ExitCode {
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
            return Failure::new(OK, "");
        }
        Failure::new(STORAGE, format!("cannot write the output: {e}"))
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
        | "chain_key_mismatch" => USAGE,
        // The admin API's: a route that is not there (an old or foreign server).
        "not_found" | "method_not_allowed" => USAGE,
        "permission_denied" => DENIED,
        // The admin API's: the admin key itself was refused (or is past its rate limit).
        "unauthorized" | "forbidden" | "too_many_requests" => DENIED,
        "key_not_found" | "key_deleted" => NOT_FOUND,
        "import_entry" => e.source.as_deref().map_or(STORAGE, exit_code),
        // The store's (`storage`, `io`, `locked`, `closed`, ...) and the API's `overloaded`,
        // `timeout` and `internal`.
        _ => STORAGE,
    }
}

fn one_line(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use keyledger::KeyId;

    use super::*;
    use crate::cli::exit;

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
            ("too_many_requests", exit::DENIED),
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
