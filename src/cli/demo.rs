//! `keyledger demo`: a short guided tour of the store's promises, in a temporary store.
//!
//! It shows hints, never secrets, and touches nothing outside its temporary store.

use std::io::Write;
use std::net::IpAddr;

use keyledger::{Actor, AuditJson, CreatedKey, Credits, Error, IpNet, KeyJson, KeyStore, NewKey, RateLimit};

use super::render::{self, Table};
use super::{Failure, exit};

const INDENT: &str = "   ";

fn net(s: &str) -> Result<IpNet, Failure> {
    Ok(keyledger::parse_net(s)?)
}

fn limit(s: &str) -> Result<RateLimit, Failure> {
    Ok(s.parse::<RateLimit>()?)
}

fn ip(s: &str) -> Result<IpAddr, Failure> {
    s.parse()
        .map_err(|_| Failure::new(exit::USAGE, format!("{s} is not an IP address")))
}

/// One `verify` call, as a table row: key, address, answer.
fn attempt(store: &KeyStore, name: &str, key: &CreatedKey, from: &str) -> Result<Vec<String>, Failure> {
    let answer = match store.verify(key.key.expose_secret(), ip(from)?) {
        Ok(v) => format!(
            "accepted, roles: {}{}",
            v.roles().collect::<Vec<_>>().join(", "),
            v.credits_remaining()
                .map(|left| format!("; credits left: {left}"))
                .unwrap_or_default()
        ),
        Err(r) => format!("rejected: {r}"),
    };
    Ok(vec![name.to_owned(), from.to_owned(), answer])
}

fn attempts(out: &mut impl Write, rows: Vec<Vec<String>>) -> Result<(), Failure> {
    let mut table = Table::new(vec!["KEY", "FROM", "ANSWER"]);
    for row in rows {
        table.row(row);
    }
    table.write(out, INDENT)?;
    writeln!(out)?;
    Ok(())
}

pub(super) fn run(out: &mut impl Write) -> Result<u8, Failure> {
    let store = KeyStore::builder().open_temporary()?;
    let root = Actor::super_admin("root");
    let alice = Actor::admin("alice");
    let bob = Actor::admin("bob");

    writeln!(
        out,
        "keyledger demo: a guided tour in a temporary store, removed when the tour ends.\n"
    )?;

    writeln!(
        out,
        "1. root, a super admin, and alice and bob, two admins, create keys with roles and whitelists.\n"
    )?;
    let ops = store.create_key(
        &root,
        NewKey::new("ops console")
            .role("ops")
            .role("deploy")
            .allow(net("10.0.0.0/8")?),
    )?;
    let bot = store.create_key(
        &alice,
        NewKey::new("notifications bot")
            .role("notifier")
            .allow(net("192.0.2.0/24")?)
            .allow(net("2001:db8::/32")?),
    )?;
    let billing = store.create_key(
        &bob,
        NewKey::new("billing sync")
            .role("billing")
            .role("reader")
            .allow(net("198.51.100.7")?),
    )?;
    let mut table = Table::new(vec!["NAME", "CREATED BY", "ROLES", "WHITELIST", "HINT"]);
    for k in store.keys().iter().map(KeyJson::from) {
        table.row(vec![
            k.name.clone(),
            k.created_by.clone(),
            k.roles.join(", "),
            render::whitelist(&k.whitelist),
            k.hint.clone(),
        ]);
    }
    table.write(out, INDENT)?;
    writeln!(
        out,
        "\n{INDENT}Each secret was shown once, to its creator; the store keeps only its hash.\n"
    )?;

    writeln!(
        out,
        "2. Services present the keys; keyledger checks the key and the caller's address.\n"
    )?;
    attempts(
        out,
        vec![
            attempt(&store, "notifications bot", &bot, "192.0.2.10")?,
            attempt(&store, "notifications bot", &bot, "2001:db8::5")?,
            attempt(&store, "notifications bot", &bot, "203.0.113.9")?,
            attempt(&store, "billing sync", &billing, "198.51.100.7")?,
            attempt(&store, "ops console", &ops, "198.51.100.7")?,
        ],
    )?;

    writeln!(out, "3. alice whitelists 203.0.113.0/24 on her key.\n")?;
    store.whitelist_ip(&alice, bot.id, [net("203.0.113.0/24")?])?;
    attempts(
        out,
        vec![attempt(&store, "notifications bot", &bot, "203.0.113.9")?],
    )?;

    writeln!(
        out,
        "4. alice limits her key to 3 requests a minute (`keyledger limit KEY_ID --rate-limit 3/1m`):\n\
         {INDENT}a burst of 3 passes, the next is refused with when to retry.\n"
    )?;
    store.set_rate_limits(&alice, bot.id, [limit("3/1m")?])?;
    let burst = (0..4)
        .map(|_| attempt(&store, "notifications bot", &bot, "203.0.113.9"))
        .collect::<Result<Vec<_>, _>>()?;
    attempts(out, burst)?;
    writeln!(
        out,
        "{INDENT}bob gives his billing key 2 credits (`keyledger credits KEY_ID --set 2`): each request\n\
         {INDENT}spends one, and with none left it is refused until a refill or more credits.\n"
    )?;
    store.set_credits(&bob, billing.id, Some(Credits::new(2)?))?;
    let spent = (0..3)
        .map(|_| attempt(&store, "billing sync", &billing, "198.51.100.7"))
        .collect::<Result<Vec<_>, _>>()?;
    attempts(out, spent)?;

    writeln!(out, "5. bob, an admin, tries to delete alice's key.\n")?;
    match store.delete_key(&bob, bot.id) {
        Err(e @ Error::PermissionDenied { .. }) => writeln!(out, "{INDENT}refused: {e}\n")?,
        Err(e) => return Err(e.into()),
        Ok(_) => {
            return Err(Failure::new(
                exit::NO,
                "the demo expected bob to be refused, and he was not",
            ));
        }
    }

    writeln!(
        out,
        "6. root, a super admin, may delete any key: alice's key stops verifying at once.\n"
    )?;
    store.delete_key(&root, bot.id)?;
    attempts(
        out,
        vec![attempt(&store, "notifications bot", &bot, "192.0.2.10")?],
    )?;

    writeln!(
        out,
        "7. The audit trail says who did what; `keyledger audit --kind deleted` answers who deleted what.\n"
    )?;
    let trail = store.audit();
    let mut table = Table::new(vec!["SEQ", "ACTOR", "ROLE", "EVENT", "KEY", "DETAIL"]);
    for e in trail.iter().map(AuditJson::from) {
        let detail = match (&e.whitelist, e.kind.as_str(), &e.ip) {
            (Some(nets), _, _) => format!("whitelist: {}", render::whitelist(nets)),
            (_, "whitelisted", Some(ip)) => format!("+ {}", render::net(ip)),
            (_, "limits_changed", _) => format!(
                "rate limits: {}",
                render::rate_limits(e.rate_limits.as_deref().unwrap_or_default())
            ),
            (_, "credits_set", _) => format!("credits: {}", e.credits.as_ref().map_or(0, |c| c.remaining)),
            _ => String::new(),
        };
        table.row(vec![
            e.seq.to_string(),
            e.actor.clone(),
            e.actor_role.clone(),
            e.kind.clone(),
            e.key_name.clone().unwrap_or_default(),
            detail,
        ]);
    }
    table.write(out, INDENT)?;
    let before = store.last_seq().saturating_sub(1);
    let live_then = store
        .keys_at(before)?
        .iter()
        .filter(|k| k.deleted.is_none())
        .count();
    let refused = store.refused()?.len();
    writeln!(
        out,
        "\n{INDENT}bob's refused attempt appended nothing to the key log; the security trail kept it apart\n\
         {INDENT}({refused} refused attempt, `keyledger audit --refused`). And the log travels in time:\n\
         {INDENT}`keyledger audit --at {before}` shows the {live_then} keys live just before the delete.\n"
    )?;

    writeln!(
        out,
        "Now try it on a store of your own (./keyledger.db, or --db DIR):"
    )?;
    writeln!(
        out,
        "{INDENT}keyledger create --actor alice --actor-role admin --name \"my service\" --role reader --ip 127.0.0.1 \\\n\
         {INDENT}    --rate-limit 100/1m"
    )?;
    writeln!(
        out,
        "{INDENT}printf '%s' \"$KEY\" | keyledger verify --ip 127.0.0.1"
    )?;
    writeln!(out, "{INDENT}keyledger list; keyledger audit")?;
    Ok(exit::OK)
}
