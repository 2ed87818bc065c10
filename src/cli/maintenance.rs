//! The store's maintenance commands, on a store opened here (never through `--server`):
//! `check` and `repair` of the log, `head` (the witness to keep outside the store),
//! `export` and `import` of a backup, and `chain-key new`. They act on the log as a whole,
//! never on one key.

use std::io::{self, Write};
use std::path::Path;

use keyledger::{ChainKey, Error, Integrity};
use serde::Serialize;

use super::exit::{self, Failure};
use super::render;
use super::store::{Store, with_progress};
use super::write_json;

pub(super) fn check(store: &Store, out: &mut impl Write) -> Result<u8, Failure> {
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

pub(super) fn repair(store: &Store, out: &mut impl Write) -> Result<u8, Failure> {
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

pub(super) fn export(store: &Store, file: &Path, out: &mut impl Write) -> Result<u8, Failure> {
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

pub(super) fn head(store: &Store, json: bool, out: &mut impl Write) -> Result<u8, Failure> {
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
pub(super) fn new_chain_key(file: &Path, out: &mut impl Write) -> Result<u8, Failure> {
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

pub(super) fn import(store: &Store, file: &Path, out: &mut impl Write) -> Result<u8, Failure> {
    let records = store
        .builder()?
        .import(&store.dir, file)
        .map_err(|e| store.failed("import", e))?;
    writeln!(out, "imported {records} records into {}", store.dir.display())?;
    Ok(exit::OK)
}
