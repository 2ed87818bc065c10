//! How the tool shows things: aligned tables and times in UTC for people, JSON with stable
//! field names for scripts.
//!
//! Only `key_json` can carry a secret, and only when `create` hands it one; `roll` prints
//! its own. Nothing here ever sees an adopted secret or a SHA-256 hash.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use keyledger::{AuditEntry, Denial, EventKind, IpNet, KeyStatus, KeyView, RefusedAttempt};
use serde::Serialize;

/// A time as RFC 3339 in UTC, with the log's microseconds.
pub(super) fn rfc3339(t: SystemTime) -> String {
    timestamp(t).to_string()
}

/// A time for people: to the second, in UTC (the tables say so in their headers).
pub(super) fn human_time(t: SystemTime) -> String {
    timestamp(t).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// An optional time for people: `never` when there is none.
fn human_time_or_never(t: Option<SystemTime>) -> String {
    t.map_or_else(|| "never".to_owned(), |t| format!("{} UTC", human_time(t)))
}

/// A length of time for people, in days (of 24 hours), hours, minutes and seconds:
/// `30d`, `1h 30m`, `0s`.
pub(super) fn duration(d: Duration) -> String {
    let rounded = jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| jiff::Span::try_from(d).ok())
        .and_then(|span| {
            span.round(
                jiff::SpanRound::new()
                    .largest(jiff::Unit::Day)
                    .smallest(jiff::Unit::Millisecond)
                    .days_are_24_hours(),
            )
            .ok()
        });
    match rounded {
        Some(span) => format!("{span:#}"),
        // Past jiff's range (about 20,000 years): no grace or expiry gets there.
        None => format!("{}s", d.as_secs()),
    }
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

/// A key, for `--json`. `key` (the secret) is present only in `create`'s output. The
/// README lists every field; scripts depend on them.
#[derive(Serialize)]
pub(super) struct KeyJson<'a> {
    id: String,
    name: &'a str,
    roles: &'a [String],
    whitelist: Vec<String>,
    created_by: &'a str,
    created_at: String,
    /// `active`, `disabled`, `expired` or `deleted`.
    status: &'static str,
    expires_at: Option<String>,
    /// To the minute.
    last_used_at: Option<String>,
    /// `null` while the key is not deleted; the same as `deleted_by` and `deleted_at`.
    deleted: Option<DeletedJson<'a>>,
    deleted_by: Option<&'a str>,
    deleted_at: Option<String>,
    /// Adopted from another system (`import-key`, `import-keys`) rather than generated.
    imported: bool,
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
        status: view.status.as_str(),
        expires_at: view.expires_at.map(rfc3339),
        last_used_at: view.last_used_at.map(rfc3339),
        deleted: view.deleted.as_ref().map(|(by, at)| DeletedJson {
            by: by.id(),
            at: rfc3339(*at),
        }),
        deleted_by: view.deleted.as_ref().map(|(by, _)| by.id()),
        deleted_at: view.deleted.as_ref().map(|(_, at)| rfc3339(*at)),
        imported: view.imported,
        hint: &view.hint,
        key: secret,
    }
}

/// An audit entry, for `--json`. `ip` is the network of a whitelist change, else `null`;
/// `previous_valid_until` is set for `rolled` only; `via` is the admin key the actor came
/// through, if any.
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
    previous_valid_until: Option<String>,
    via: Option<String>,
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
        previous_valid_until: entry.previous_valid_until.map(rfc3339),
        via: entry.via.map(|id| id.to_string()),
    }
}

/// A roll's grace period for people: how long, and until when, the previous secret verified.
fn grace(rolled_at: SystemTime, previous_valid_until: SystemTime) -> String {
    match previous_valid_until.duration_since(rolled_at) {
        Ok(d) if !d.is_zero() => format!(
            "grace {}: previous secret until {} UTC",
            duration(d),
            human_time(previous_valid_until)
        ),
        _ => "no grace: previous secret stopped at once".to_owned(),
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
            EventKind::Created | EventKind::Imported => format!("whitelist: {}", whitelist_short(&e.nets)),
            EventKind::Whitelisted => format!("+ {}", whitelist(&e.nets)),
            EventKind::Unwhitelisted => format!("- {}", whitelist(&e.nets)),
            EventKind::Rolled => e
                .previous_valid_until
                .map(|until| grace(e.at, until))
                .unwrap_or_default(),
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

/// Keys as a table, with where each stands and when it expires.
pub(super) fn keys_table(keys: &[KeyView]) -> Table {
    let mut table = Table::new(vec![
        "ID",
        "NAME",
        "ROLES",
        "WHITELIST",
        "CREATED BY",
        "CREATED (UTC)",
        "EXPIRES (UTC)",
        "HINT",
        "STATUS",
    ]);
    for k in keys {
        table.row(vec![
            k.id.to_string(),
            k.name.clone(),
            k.roles.join(", "),
            whitelist_short(&k.whitelist),
            k.created_by.id().to_owned(),
            human_time(k.created_at),
            k.expires_at.map_or_else(|| "never".to_owned(), human_time),
            k.hint.clone(),
            status(k),
        ]);
    }
    table
}

/// Where a key stands, and for a deleted key who deleted it.
fn status(k: &KeyView) -> String {
    match (&k.deleted, k.status) {
        (Some((by, _)), _) => format!("deleted by {}", by.id()),
        (None, KeyStatus::Expired) => {
            format!("expired {} UTC", k.expires_at.map(human_time).unwrap_or_default())
        }
        (None, status) => status.as_str().to_owned(),
    }
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
    let origin = if k.imported {
        "adopted from another system (import)"
    } else {
        "generated by keyledger"
    };
    for (field, value) in [
        ("id", k.id.to_string()),
        ("name", k.name.clone()),
        ("hint", k.hint.clone()),
        ("status", k.status.as_str().to_owned()),
        ("roles", k.roles.join(", ")),
        ("whitelist", whitelist(&k.whitelist)),
        ("created", created),
        ("origin", origin.to_owned()),
        ("expires", human_time_or_never(k.expires_at)),
        ("last used", human_time_or_never(k.last_used_at)),
        ("deleted", deleted),
    ] {
        writeln!(out, "{field:<10} {value}")?;
    }
    Ok(())
}

/// A refused command of the security trail, for `audit --refused --json`.
#[derive(Serialize)]
pub(super) struct RefusedJson<'a> {
    at: String,
    actor: &'a str,
    actor_role: &'static str,
    /// `create`, `import`, `whitelist`, `unwhitelist`, `delete`, `roll`, `disable` or
    /// `enable`.
    action: &'static str,
    /// `null` for a creation or an import.
    key_id: Option<String>,
    /// For `not_owner`, the actor who created the key.
    owner: Option<&'a str>,
    via: Option<String>,
    /// `not_an_admin`, `grants_super_admin` or `not_owner`.
    reason: &'static str,
    message: String,
}

pub(super) fn refused_json(attempt: &RefusedAttempt) -> RefusedJson<'_> {
    RefusedJson {
        at: rfc3339(attempt.at),
        actor: attempt.actor.id(),
        actor_role: attempt.actor.role().as_str(),
        action: attempt.action.as_str(),
        key_id: attempt.key.map(|id| id.to_string()),
        owner: match &attempt.denial {
            Denial::NotOwner { owner, .. } => Some(owner),
            _ => None,
        },
        via: attempt.via.map(|id| id.to_string()),
        reason: attempt.denial.code(),
        message: attempt.denial.to_string(),
    }
}

/// The security trail as a table.
pub(super) fn refused_table(attempts: &[RefusedAttempt]) -> Table {
    let mut table = Table::new(vec!["TIME (UTC)", "ACTOR", "ROLE", "ACTION", "KEY", "REASON"]);
    for a in attempts {
        table.row(vec![
            human_time(a.at),
            a.actor.id().to_owned(),
            a.actor.role().as_str().to_owned(),
            a.action.as_str().to_owned(),
            a.key.map_or_else(|| "(new)".to_owned(), |id| id.to_string()),
            a.denial.to_string(),
        ]);
    }
    table
}
