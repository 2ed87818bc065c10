//! How the tool shows things to people: aligned tables and times in UTC, drawn from the
//! JSON types (`keyledger::KeyJson` and its siblings) that `--json` prints and the admin API
//! answers, so that a command shows the same whether it ran on the store or through
//! `--server`.
//!
//! Nothing here ever sees a secret, an adopted one or a SHA-256 hash: the callers print
//! the one secret of `create` and `roll` themselves.

use std::io::{self, Write};
use std::time::Duration;

use keyledger::{AuditJson, ChangesJson, CreditsJson, IpNet, KeyJson, RateLimitJson, RefusedJson};

/// A time for people, from the JSON's RFC 3339: to the second, in UTC (the tables say so
/// in their headers). A time that is not RFC 3339 is shown as it came.
pub(super) fn human_time(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

/// An optional time for people: `never` when there is none.
fn human_time_or_never(t: Option<&str>) -> String {
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

/// A whitelist entry as people type it, from the JSON's CIDR string: a single address
/// without its `/32` or `/128`.
pub(super) fn net(cidr: &str) -> String {
    match cidr.parse::<IpNet>() {
        Ok(n) if n.prefix_len() == n.max_prefix_len() => n.addr().to_string(),
        _ => cidr.to_owned(),
    }
}

/// A whitelist for people; empty admits any address.
pub(super) fn whitelist(nets: &[String]) -> String {
    if nets.is_empty() {
        return "any address".into();
    }
    nets.iter().map(|n| net(n)).collect::<Vec<_>>().join(", ")
}

/// A whitelist shortened to fit a table cell.
pub(super) fn whitelist_short(nets: &[String]) -> String {
    const SHOWN: usize = 3;
    if nets.len() <= SHOWN {
        return whitelist(nets);
    }
    let head: Vec<String> = nets[..SHOWN].iter().map(|n| net(n)).collect();
    format!("{}, +{} more", head.join(", "), nets.len() - SHOWN)
}

/// Rate limits for people, as `--rate-limit` takes them, shortest window first (the
/// JSON's order): `20/1s, 100/1m`; `none` for a key without limits.
pub(super) fn rate_limits(limits: &[RateLimitJson]) -> String {
    if limits.is_empty() {
        return "none".into();
    }
    let shown: Vec<String> = limits
        .iter()
        .map(|l| format!("{}/{}", l.limit, l.window))
        .collect();
    shown.join(", ")
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
fn grace(rolled_at: &str, previous_valid_until: &str) -> String {
    let span = rolled_at
        .parse::<jiff::Timestamp>()
        .and_then(|at| {
            Ok(previous_valid_until
                .parse::<jiff::Timestamp>()?
                .duration_since(at))
        })
        .ok()
        .and_then(|d| Duration::try_from(d).ok());
    match span {
        Some(d) if !d.is_zero() => format!(
            "grace {}: previous secret until {} UTC",
            duration(d),
            human_time(previous_valid_until)
        ),
        _ => "no grace: previous secret stopped at once".to_owned(),
    }
}

/// The audit trail as a table.
pub(super) fn audit_table(entries: &[AuditJson]) -> Table {
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
        let mut detail = match (e.kind.as_str(), &e.whitelist, &e.ip, &e.previous_valid_until) {
            ("limits_changed", ..) => match e.rate_limits.as_deref() {
                Some(limits) if !limits.is_empty() => format!("rate limits: {}", rate_limits(limits)),
                _ => "rate limits removed".to_owned(),
            },
            ("credits_set", ..) => match &e.credits {
                Some(c) => format!("credits set: {}", credits_set(c)),
                None => "credits removed".to_owned(),
            },
            ("credits_added", ..) => format!("+ {} credits", e.credits_added.unwrap_or_default()),
            ("updated", ..) => e.changes.as_ref().map(changes).unwrap_or_default(),
            ("actor_revoked", ..) => format!(
                "person {}{}",
                e.person.as_deref().unwrap_or_default(),
                if e.with_keys {
                    ", with the keys they made"
                } else {
                    ""
                }
            ),
            (_, Some(nets), _, _) if e.person.is_some() => format!(
                "for {}; whitelist: {}",
                e.person.as_deref().unwrap_or_default(),
                whitelist_short(nets)
            ),
            (_, Some(nets), _, _) => format!("whitelist: {}", whitelist_short(nets)),
            ("whitelisted", _, Some(ip), _) => format!("+ {}", net(ip)),
            ("unwhitelisted", _, Some(ip), _) => format!("- {}", net(ip)),
            (_, _, _, Some(until)) => grace(&e.at, until),
            _ => String::new(),
        };
        // A created or imported key's first limits, after its whitelist.
        if e.kind != "limits_changed"
            && let Some(limits) = e.rate_limits.as_deref().filter(|l| !l.is_empty())
        {
            detail.push_str(&format!("; rate limits: {}", rate_limits(limits)));
        }
        table.row(vec![
            e.seq.to_string(),
            human_time(&e.at),
            e.actor.clone(),
            e.actor_role.clone(),
            e.kind.clone(),
            e.key_id.clone().unwrap_or_else(|| "-".to_owned()),
            e.key_name.clone().unwrap_or_default(),
            detail,
        ]);
    }
    table
}

/// Keys as a table, with where each stands and when it expires.
pub(super) fn keys_table(keys: &[KeyJson]) -> Table {
    let mut table = Table::new(vec![
        "ID",
        "NAME",
        "ROLES",
        "WHITELIST",
        "RATE LIMITS",
        "CREDITS",
        "CREATED BY",
        "CREATED (UTC)",
        "EXPIRES (UTC)",
        "HINT",
        "STATUS",
    ]);
    for k in keys {
        table.row(vec![
            k.id.clone(),
            k.name.clone(),
            k.roles.join(", "),
            whitelist_short(&k.whitelist),
            rate_limits(&k.rate_limits),
            k.credits
                .as_ref()
                .map_or_else(|| "-".to_owned(), |c| c.remaining.to_string()),
            match &k.acts_for {
                Some(person) if *person != k.created_by => format!("{} (for {person})", k.created_by),
                _ => k.created_by.clone(),
            },
            human_time(&k.created_at),
            k.expires_at
                .as_deref()
                .map_or_else(|| "never".to_owned(), human_time),
            k.hint.clone(),
            status(k),
        ]);
    }
    table
}

/// Where a key stands, and for a deleted key who deleted it.
fn status(k: &KeyJson) -> String {
    match (&k.deleted_by, k.status.as_str()) {
        (Some(by), _) => format!("deleted by {by}"),
        (None, "expired") => format!(
            "expired {} UTC",
            k.expires_at.as_deref().map(human_time).unwrap_or_default()
        ),
        (None, status) => status.to_owned(),
    }
}

/// One key, field by field.
pub(super) fn key_details(out: &mut impl Write, k: &KeyJson) -> io::Result<()> {
    let created = format!(
        "{} UTC by {} ({})",
        human_time(&k.created_at),
        k.created_by,
        k.created_by_role
    );
    let deleted = match (&k.deleted_at, &k.deleted_by, &k.deleted_by_role) {
        (Some(at), Some(by), Some(role)) => format!("{} UTC by {by} ({role})", human_time(at)),
        _ => "no".into(),
    };
    let origin = if k.imported {
        "adopted from another system (import)"
    } else {
        "generated by keyledger"
    };
    for (field, value) in [
        ("id", k.id.clone()),
        ("name", k.name.clone()),
        ("hint", k.hint.clone()),
        ("status", k.status.clone()),
        ("roles", k.roles.join(", ")),
        ("whitelist", whitelist(&k.whitelist)),
        ("rate limits", rate_limits(&k.rate_limits)),
        ("credits", credits(k.credits.as_ref())),
        (
            "external id",
            k.external_id.clone().unwrap_or_else(|| "none".into()),
        ),
        (
            "meta",
            k.meta.as_ref().map_or_else(|| "none".into(), ToString::to_string),
        ),
        ("created", created),
        ("origin", origin.to_owned()),
        ("expires", human_time_or_never(k.expires_at.as_deref())),
        ("last used", human_time_or_never(k.last_used_at.as_deref())),
        ("deleted", deleted),
    ] {
        writeln!(out, "{field:<11} {value}")?;
    }
    Ok(())
}

/// What an update changed, in a line: `name: billing bot; roles: bot, billing; external
/// id removed; meta: {"plan":"pro"}`.
fn changes(c: &ChangesJson) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &c.name {
        parts.push(format!("name: {name}"));
    }
    if let Some(roles) = &c.roles {
        parts.push(format!("roles: {}", roles.join(", ")));
    }
    match &c.external_id {
        Some(Some(id)) => parts.push(format!("external id: {id}")),
        Some(None) => parts.push("external id removed".to_owned()),
        None => {}
    }
    match &c.meta {
        Some(Some(meta)) => parts.push(format!("meta: {meta}")),
        Some(None) => parts.push("meta removed".to_owned()),
        None => {}
    }
    parts.join("; ")
}

/// A key's credits in a line: `9000 left, back up to 10000 every 30d (next 2026-…)`, or
/// `none (unmetered)`.
pub(super) fn credits(credits: Option<&CreditsJson>) -> String {
    let Some(c) = credits else {
        return "none (unmetered)".to_owned();
    };
    match (&c.refill, &c.next_refill_at) {
        (Some(r), Some(next)) => format!(
            "{} left, back up to {} every {} (next {} UTC)",
            c.remaining,
            r.amount,
            r.every,
            human_time(next)
        ),
        (Some(r), None) => format!("{}, back up to {} every {}", c.remaining, r.amount, r.every),
        (None, _) => format!("{} left, no refill", c.remaining),
    }
}

/// Credits as a record set them: `10000, back up to 10000 every 30d`.
fn credits_set(c: &CreditsJson) -> String {
    match &c.refill {
        Some(r) => format!("{}, back up to {} every {}", c.remaining, r.amount, r.every),
        None => c.remaining.to_string(),
    }
}

/// The security trail as a table.
pub(super) fn refused_table(attempts: &[RefusedJson]) -> Table {
    let mut table = Table::new(vec!["TIME (UTC)", "ACTOR", "ROLE", "ACTION", "KEY", "REASON"]);
    for a in attempts {
        table.row(vec![
            human_time(&a.at),
            a.actor.clone(),
            a.actor_role.clone(),
            a.action.clone(),
            a.key_id.clone().unwrap_or_else(|| "(new)".to_owned()),
            a.message.clone(),
        ]);
    }
    table
}
