//! `keyledger audit`: the audit trail filtered (by key, actor, kind and time), the security
//! trail of refused commands (`--refused`), and the keys as they stood at a record
//! (`--at SEQ`), alike on the store and through `--server`. It reads; it never changes the
//! store.

use std::io::Write;

use keyledger::{AuditFilter, AuditJson, KeyId, KeyJson, RefusedJson};
use serde::Serialize;

use super::args::AuditArgs;
use super::exit::{self, Failure};
use super::render;
use super::{Target, existing_key, write_json};

pub(super) fn audit(target: &Target, args: AuditArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let filter = args.filter();
    let limit = args.limit();
    if args.refused {
        return audit_refused(target, &filter, limit, args.json, out);
    }
    if let Some(seq) = args.at {
        return audit_at(target, seq, args.key, limit, args.json, out);
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
                .take(limit.unwrap_or(usize::MAX))
                .map(AuditJson::from)
                .collect()
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => client.audit(&filter, limit)?,
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
    limit: Option<usize>,
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
            .take(limit.unwrap_or(usize::MAX))
            .map(RefusedJson::from)
            .collect(),
        #[cfg(feature = "client")]
        Target::Remote(client) => client.refused(filter, limit)?,
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
    limit: Option<usize>,
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
                .take(limit.unwrap_or(usize::MAX))
                .map(KeyJson::from)
                .collect();
            let event = keys.audit_entry(seq).map(|e| AuditJson::from(&e));
            (views, event)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => {
            let views = client.keys_at(seq, only, limit)?;
            let event = if json {
                None
            } else {
                let trail = client.audit(&AuditFilter::default(), usize::try_from(seq).ok())?;
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
