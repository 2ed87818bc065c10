//! How the tool shows things: aligned tables and times in UTC for people, JSON with stable
//! field names for scripts.
//!
//! Only `key_json` can carry a secret, and only when `create` hands it one.

use std::io::{self, Write};
use std::time::SystemTime;

use keyledger::{AuditEntry, EventKind, IpNet, KeyView};
use serde::Serialize;

/// A time as RFC 3339 in UTC, with the log's microseconds.
pub(super) fn rfc3339(t: SystemTime) -> String {
    timestamp(t).to_string()
}

/// A time for people: to the second, in UTC (the tables say so in their headers).
pub(super) fn human_time(t: SystemTime) -> String {
    timestamp(t).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

fn timestamp(t: SystemTime) -> jiff::Timestamp {
    // Only a log written by a clock past the year 9999 gets here; show the largest time
    // rather than refuse to show the log.
    jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::MAX)
}

/// A whitelist entry as people type it: a single address without its `/32` or `/128`.
pub(super) fn net(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

/// A whitelist for people; empty admits any address.
pub(super) fn whitelist(nets: &[IpNet]) -> String {
    if nets.is_empty() {
        return "any address".into();
    }
    nets.iter().map(net).collect::<Vec<_>>().join(", ")
}

/// A whitelist shortened to fit a table cell.
pub(super) fn whitelist_short(nets: &[IpNet]) -> String {
    const SHOWN: usize = 3;
    if nets.len() <= SHOWN {
        return whitelist(nets);
    }
    let head: Vec<String> = nets[..SHOWN].iter().map(net).collect();
    format!("{}, +{} more", head.join(", "), nets.len() - SHOWN)
}

/// Columns padded to their widest cell, two spaces apart.
pub(super) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(header: Vec<&'static str>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(super) fn write(&self, out: &mut impl Write, indent: &str) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::from(indent);
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w.saturating_sub(cell.chars().count())));
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A key, for `--json`. `key` (the secret) is present only in `create`'s output.
#[derive(Serialize)]
pub(super) struct KeyJson<'a> {
    id: String,
    name: &'a str,
    roles: &'a [String],
    whitelist: Vec<String>,
    created_by: &'a str,
    created_at: String,
    /// `null` while the key is live.
    deleted: Option<DeletedJson<'a>>,
    hint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
}

#[derive(Serialize)]
struct DeletedJson<'a> {
    by: &'a str,
    at: String,
}

pub(super) fn key_json<'a>(view: &'a KeyView, secret: Option<&'a str>) -> KeyJson<'a> {
    KeyJson {
        id: view.id.to_string(),
        name: &view.name,
        roles: &view.roles,
        whitelist: view.whitelist.iter().map(ToString::to_string).collect(),
        created_by: view.created_by.id(),
        created_at: rfc3339(view.created_at),
        deleted: view.deleted.as_ref().map(|(by, at)| DeletedJson {
            by: by.id(),
            at: rfc3339(*at),
        }),
        hint: &view.hint,
        key: secret,
    }
}

/// An audit entry, for `--json`. `ip` is the network of a whitelist change, else `null`.
#[derive(Serialize)]
pub(super) struct AuditJson<'a> {
    seq: u64,
    at: String,
    actor: &'a str,
    actor_role: &'static str,
    kind: &'static str,
    key_id: String,
    key_name: &'a str,
    ip: Option<String>,
}

pub(super) fn audit_json(entry: &AuditEntry) -> AuditJson<'_> {
    AuditJson {
        seq: entry.seq,
        at: rfc3339(entry.at),
        actor: entry.actor.id(),
        actor_role: entry.actor.role().as_str(),
        kind: entry.kind.as_str(),
        key_id: entry.key_id.to_string(),
        key_name: &entry.key_name,
        ip: whitelist_change(entry).map(ToString::to_string),
    }
}

fn whitelist_change(entry: &AuditEntry) -> Option<&IpNet> {
    match entry.kind {
        EventKind::Whitelisted | EventKind::Unwhitelisted => entry.nets.first(),
        _ => None,
    }
}

/// The audit trail as a table.
pub(super) fn audit_table(entries: &[AuditEntry]) -> Table {
    let mut table = Table::new(vec![
        "SEQ",
        "TIME (UTC)",
        "ACTOR",
        "ROLE",
        "EVENT",
        "KEY",
        "NAME",
        "DETAIL",
    ]);
    for e in entries {
        let detail = match e.kind {
            EventKind::Created => format!("whitelist: {}", whitelist_short(&e.nets)),
            EventKind::Whitelisted => format!("+ {}", whitelist(&e.nets)),
            EventKind::Unwhitelisted => format!("- {}", whitelist(&e.nets)),
            _ => String::new(),
        };
        table.row(vec![
            e.seq.to_string(),
            human_time(e.at),
            e.actor.id().to_owned(),
            e.actor.role().as_str().to_owned(),
            e.kind.as_str().to_owned(),
            e.key_id.to_string(),
            e.key_name.clone(),
            detail,
        ]);
    }
    table
}

/// Keys as a table; `status` adds a column saying which are deleted, and by whom.
pub(super) fn keys_table(keys: &[KeyView], status: bool) -> Table {
    let mut header = vec![
        "ID",
        "NAME",
        "ROLES",
        "WHITELIST",
        "CREATED BY",
        "CREATED (UTC)",
        "HINT",
    ];
    if status {
        header.push("STATUS");
    }
    let mut table = Table::new(header);
    for k in keys {
        let mut row = vec![
            k.id.to_string(),
            k.name.clone(),
            k.roles.join(", "),
            whitelist_short(&k.whitelist),
            k.created_by.id().to_owned(),
            human_time(k.created_at),
            k.hint.clone(),
        ];
        if status {
            row.push(match &k.deleted {
                Some((by, _)) => format!("deleted by {}", by.id()),
                None => "live".into(),
            });
        }
        table.row(row);
    }
    table
}

/// One key, field by field.
pub(super) fn key_details(out: &mut impl Write, k: &KeyView) -> io::Result<()> {
    let created = format!(
        "{} UTC by {} ({})",
        human_time(k.created_at),
        k.created_by.id(),
        k.created_by.role()
    );
    let deleted = match &k.deleted {
        Some((by, at)) => format!("{} UTC by {} ({})", human_time(*at), by.id(), by.role()),
        None => "no".into(),
    };
    for (field, value) in [
        ("id", k.id.to_string()),
        ("name", k.name.clone()),
        ("hint", k.hint.clone()),
        ("roles", k.roles.join(", ")),
        ("whitelist", whitelist(&k.whitelist)),
        ("created", created),
        ("deleted", deleted),
    ] {
        writeln!(out, "{field:<10} {value}")?;
    }
    Ok(())
}
