//! `serve --print-config`: the settings in force once the command line, the environment,
//! the file and the defaults are merged, every one of them, as TOML that `--config` reads
//! back; secrets redacted. It prints; it never opens the store.

use std::io::Write;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};
use toml_writer::ToTomlValue;

use super::{Key, Kind, keys, secret, serve_command};
use crate::cli::exit::{self, Failure};

/// Prints serve's settings in force, one `key = value` line each; a setting with no value
/// is a comment that says so.
///
/// # Errors
/// Only the output's.
pub(in crate::cli) fn print(root: &Command, given: &ArgMatches, out: &mut impl Write) -> Result<(), Failure> {
    let (Some(serve), Some(matches)) = (serve_command(root), given.subcommand_matches("serve")) else {
        return Err(Failure::new(exit::USAGE, "--print-config is an option of serve"));
    };
    let keys = keys(&serve);
    writeln!(
        out,
        "# keyledger serve: the settings in force (the command line over the environment over \
         --config over the defaults),\n# as --config reads them; secrets redacted"
    )?;
    for key in &keys {
        writeln!(out, "{}", line(&serve, &keys, matches, key))?;
    }
    Ok(())
}

fn line(serve: &Command, keys: &[Key<'_>], matches: &ArgMatches, key: &Key<'_>) -> String {
    let raw: Vec<String> = matches
        .get_raw(key.id())
        .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let value = match key.kind {
        Kind::Switch { .. } => raw.first().is_some_and(|v| v == "true").to_toml_value(),
        Kind::Many => format!(
            "[{}]",
            raw.iter().map(|v| value(key, v)).collect::<Vec<_>>().join(", ")
        ),
        Kind::One => match raw.first() {
            Some(v) => value(key, v),
            None => return format!("# {}: not set", key.name),
        },
    };
    // A default that excludes a setting given (`log-auth`'s, beside `log-auth-sample`)
    // would be refused beside it if it were read back.
    if matches.value_source(key.id()) == Some(ValueSource::DefaultValue) {
        let given = |other: &&Key<'_>| {
            matches
                .value_source(other.id())
                .is_some_and(|source| source != ValueSource::DefaultValue)
        };
        if let Some(other) = keys
            .iter()
            .filter(given)
            .find(|other| super::excludes(serve, key.arg, other.arg))
        {
            return format!(
                "# {} = {value}: the default, unused with `{}`",
                key.name, other.name
            );
        }
    }
    format!("{} = {value}", key.name)
}

/// One value as TOML: an integer if it is one as written, else a string; redacted.
fn value(key: &Key<'_>, raw: &str) -> String {
    let shown = if key.is_path() && secret::shape(raw).is_some() {
        "REDACTED".to_owned()
    } else {
        keyledger::redact_keys(&secret::redact_credentials(raw)).into_owned()
    };
    match shown.parse::<i64>() {
        Ok(n) if n.to_string() == shown => n.to_toml_value(),
        _ => shown.as_str().to_toml_value(),
    }
}
