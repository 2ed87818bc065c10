//! How the tool shows things to people: aligned tables and times in UTC. The JSON for
//! scripts is the library's (`keyledger::KeyJson` and its siblings), shared with the admin
//! API.
//!
//! Nothing here ever sees a secret, an adopted one or a SHA-256 hash.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use keyledger::{AuditEntry, EventKind, IpNet, KeyStatus, KeyView, RefusedAttempt};

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
