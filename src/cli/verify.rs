//! `keyledger verify`: a key read from standard input, verified against the store as a
//! service would (`--times N`: as N requests in a row would, so that a rate limit can be
//! seen running out), with the exit code and `--json` answer scripts branch on. It works on a
//! store opened here, never through `--server`, and never repeats the key it read.

use std::io::Write;

use keyledger::{Rejection, VerifiedKey};
use serde::Serialize;

use super::args::VerifyArgs;
use super::exit::{self, Failure};
use super::store::Store;
use super::{read_key, write_json};

/// `verify --json`: the key's id, name and roles when valid; the reason's code when not,
/// and for a key past its rate limit the whole seconds until a request may pass again.
#[derive(Serialize)]
struct VerifyJson<'a> {
    valid: bool,
    reason: Option<&'static str>,
    id: Option<String>,
    name: Option<&'a str>,
    roles: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credits_remaining: Option<u64>,
}

pub(super) fn verify(store: &Store, args: VerifyArgs, out: &mut impl Write) -> Result<u8, Failure> {
    if !args.key_on_command_line.is_empty() {
        return Err(Failure::new(
            exit::USAGE,
            "verify reads the key from standard input, never from the command line, where other \
             users and your shell history would see it: printf '%s' \"$KEY\" | keyledger verify --ip IP",
        ));
    }
    let keys = store.open(false)?;
    let secret = read_key("printf '%s' \"$KEY\" | keyledger verify --ip IP")?;
    let mut accepted = false;
    // Every answer is shown: the last alone would hide when a rate limit ran out.
    for _ in 0..args.times {
        let verdict = keys.verify_with_cost(&secret, args.ip, args.cost);
        accepted = verdict.is_ok();
        answer(&verdict, args.json, out)?;
    }
    Ok(if accepted { exit::OK } else { exit::NO })
}

/// One answer: a JSON object or a line.
fn answer(verdict: &Result<VerifiedKey, Rejection>, json: bool, out: &mut impl Write) -> Result<(), Failure> {
    if json {
        let answer = match verdict {
            Ok(v) => VerifyJson {
                valid: true,
                reason: None,
                id: Some(v.id().to_string()),
                name: Some(v.name()),
                roles: v.roles().collect(),
                retry_after_s: None,
                credits_remaining: v.credits_remaining(),
            },
            Err(r) => VerifyJson {
                valid: false,
                reason: Some(r.code()),
                id: None,
                name: None,
                roles: Vec::new(),
                retry_after_s: r.retry_after_secs(),
                credits_remaining: None,
            },
        };
        write_json(out, &answer)?;
    } else {
        match verdict {
            Ok(v) => writeln!(
                out,
                "accepted: key {} \"{}\", roles: {}{}",
                v.id(),
                v.name(),
                v.roles().collect::<Vec<_>>().join(", "),
                v.credits_remaining()
                    .map(|left| format!(", credits left: {left}"))
                    .unwrap_or_default()
            )?,
            Err(r) => writeln!(out, "rejected: {r}")?,
        }
    }
    Ok(())
}
