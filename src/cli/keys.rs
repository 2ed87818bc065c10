//! The key commands: `create`, `roll`, `disable` and `enable`, `whitelist` and
//! `unwhitelist`, `limit`, `delete`, `import-key`, `import-keys`, `list` and `show`, alike on the
//! store and through `--server`, and how each reports what it did. It prints a secret only
//! in `create` and `roll`, once, and never one it read; every rule is the library's (or the
//! server's), never decided here.

use std::collections::HashMap;
#[cfg(feature = "client")]
use std::io::Read;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::Path;

use keyledger::{Error, ErrorJson, ExistingKey, ImportedJson, KeyId, KeyJson, RollJson};
#[cfg(feature = "client")]
use zeroize::Zeroizing;

use super::args::{CreateArgs, ImportKeyArgs, ImportKeysArgs, KeyArgs, LimitArgs, RollArgs, WhitelistArgs};
use super::exit::{self, Failure};
use super::render;
use super::store::Store;
use super::{Target, existing_key, read_key, write_json};

/// A key id the admin API gave back.
#[cfg(feature = "client")]
fn answered_id(id: &str) -> Result<KeyId, Failure> {
    id.parse().map_err(|e: Error| {
        Failure::new(
            exit::STORAGE,
            format!("the server gave back a key id that is not one: {e}"),
        )
    })
}

const SHOWN_ONCE: &str =
    "This is the only time the key is shown: keyledger keeps only its hash. Store it now.";

pub(super) fn create(target: &Target, args: CreateArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let created = match target {
        Target::Local(store) => {
            let keys = store.open(true)?;
            // After the open, which may replay a long log: --expires-in counts from the write.
            let mut new = args.key.new_key(args.key.expiry()?);
            if let Some(person) = &args.acts_for {
                new = new.acting_for(person.clone());
            }
            if let Some(id) = &args.external_id {
                new = new.external_id(id.clone());
            }
            if let Some(meta) = &args.meta {
                new = new.meta(keyledger::Meta::parse(meta)?);
            }
            let created = keys.create_key(&args.who.actor()?, new)?;
            KeyJson::created(&existing_key(&keys, created.id)?, &created.key)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => {
            // Refused here as on the store; the server counts --expires-in from its write.
            let expiry = args.key.expiry()?;
            let mut body = args.key.body(expiry, true);
            body.actor.clone_from(&args.acts_for);
            body.external_id.clone_from(&args.external_id);
            body.meta = args
                .meta
                .as_deref()
                .map(keyledger::Meta::parse)
                .transpose()?
                .map(|m| m.to_value());
            client.create(&body)?
        }
    };
    if args.json {
        write_json(out, &created)?;
    } else {
        writeln!(out, "created key {} \"{}\"", created.id, created.name)?;
        key_summary(out, &created)?;
        writeln!(out, "  key        {}", created.key.as_deref().unwrap_or_default())?;
        writeln!(out)?;
        writeln!(out, "{SHOWN_ONCE}")?;
    }
    Ok(exit::OK)
}

/// The lines `create` and `import-key` print under their first.
fn key_summary(out: &mut impl Write, key: &KeyJson) -> io::Result<()> {
    writeln!(out, "  roles      {}", key.roles.join(", "))?;
    writeln!(out, "  whitelist  {}", render::whitelist(&key.whitelist))?;
    if let Some(at) = &key.expires_at {
        writeln!(out, "  expires    {} UTC", render::human_time(at))?;
    }
    if !key.rate_limits.is_empty() {
        writeln!(out, "  limits     {}", render::rate_limits(&key.rate_limits))?;
    }
    if key.credits.is_some() {
        writeln!(out, "  credits    {}", render::credits(key.credits.as_ref()))?;
    }
    Ok(())
}

pub(super) fn roll(target: &Target, args: RollArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let id = args.key.key_id;
    let (rolled, name) = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            let rolled = keys.roll_key(&args.key.who.actor()?, id, args.grace)?;
            (RollJson::from(&rolled), existing_key(&keys, id)?.name)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => {
            // The name first: once rolled, the new secret is shown whatever happens next.
            let name = if args.json {
                String::new()
            } else {
                client.show(id)?.name.clone()
            };
            (client.roll(id, args.grace)?, name)
        }
    };
    if args.json {
        write_json(out, &rolled)?;
        return Ok(exit::OK);
    }
    writeln!(out, "rolled key {} \"{name}\"", rolled.id)?;
    writeln!(out, "  key        {}", rolled.key)?;
    if args.grace.is_zero() {
        writeln!(out, "  previous   stopped verifying at once")?;
    } else {
        writeln!(
            out,
            "  previous   verifies until {} UTC (grace {})",
            render::human_time(&rolled.previous_valid_until),
            render::duration(args.grace)
        )?;
    }
    writeln!(out)?;
    writeln!(out, "{SHOWN_ONCE}")?;
    Ok(exit::OK)
}

/// What `disable` and `enable` do.
#[derive(Clone, Copy)]
pub(super) enum Switch {
    Disable,
    Enable,
}

pub(super) fn switch(
    target: &Target,
    args: KeyArgs,
    to: Switch,
    out: &mut impl Write,
) -> Result<u8, Failure> {
    let id = args.key_id;
    let view = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            let actor = args.who.actor()?;
            match to {
                Switch::Disable => keys.disable_key(&actor, id)?.seq,
                Switch::Enable => keys.enable_key(&actor, id)?,
            };
            KeyJson::from(&existing_key(&keys, id)?)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => client.switch(id, matches!(to, Switch::Enable))?,
    };
    match to {
        Switch::Disable => writeln!(
            out,
            "disabled key {} \"{}\"; it is rejected until enabled again",
            view.id, view.name
        )?,
        Switch::Enable => writeln!(
            out,
            "enabled key {} \"{}\"; its status is now {}",
            view.id, view.name, view.status
        )?,
    }
    Ok(exit::OK)
}

/// `limit`: sets a key's rate limits, or with `--no-rate-limit` (no `--rate-limit` given)
/// removes them.
pub(super) fn limit(target: &Target, args: LimitArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let id = args.key.key_id;
    let view = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            keys.set_rate_limits(&args.key.who.actor()?, id, args.rate_limits.iter().copied())?;
            KeyJson::from(&existing_key(&keys, id)?)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => client.set_limits(id, &args.rate_limits)?,
    };
    if args.json {
        write_json(out, &view)?;
    } else if view.rate_limits.is_empty() {
        writeln!(
            out,
            "removed the rate limits of key {} \"{}\"; its rate limits are now: none",
            view.id, view.name
        )?;
    } else {
        writeln!(
            out,
            "set the rate limits of key {} \"{}\"; its rate limits are now: {}",
            view.id,
            view.name,
            render::rate_limits(&view.rate_limits)
        )?;
    }
    Ok(exit::OK)
}

pub(super) fn import_key(target: &Target, args: ImportKeyArgs, out: &mut impl Write) -> Result<u8, Failure> {
    const HOW: &str =
        "printf '%s' \"$SECRET\" | keyledger import-key --actor ID --actor-role ROLE --name NAME --role R";
    if !args.key_on_command_line.is_empty() {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "import-key reads the secret from standard input, never from the command line, where \
                 other users and your shell history would see it: {HOW}"
            ),
        ));
    }
    if io::stdin().is_terminal() {
        // The terminal would echo it as it is typed.
        return Err(Failure::new(
            exit::USAGE,
            format!("import-key reads the secret from a pipe or a file, not a terminal: {HOW}"),
        ));
    }
    let secret = read_key(HOW)?;
    let expiry = args.key.expiry()?;
    // Checked before the open (or the request): a refused secret makes no store.
    let adopted = ExistingKey::with_secret(args.key.new_key(expiry), &secret)?;
    // The store names the bad entry of an import by its position: here there is one.
    let whole = |failure: Failure| import_failure(failure, |_| String::new());
    let view = match target {
        Target::Local(store) => {
            drop(secret);
            let keys = store.open(true)?;
            let ids = keys
                .import_keys(&args.who.actor()?, vec![adopted])
                .map_err(|e| whole(e.into()))?;
            let id = ids.first().copied().ok_or_else(no_id)?;
            KeyJson::from(&existing_key(&keys, id)?)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => {
            drop(adopted);
            let imported = client
                .import_key(&args.key.body(expiry, false), &secret)
                .map_err(whole)?;
            drop(secret);
            let id = imported.first().ok_or_else(no_id)?;
            client.show(answered_id(&id.id)?)?
        }
    };
    if args.json {
        write_json(out, &view)?;
    } else {
        writeln!(out, "imported key {} \"{}\"", view.id, view.name)?;
        key_summary(out, &view)?;
        writeln!(out)?;
        writeln!(
            out,
            "keyledger kept only the secret's hash; the clients that hold it verify as before."
        )?;
    }
    Ok(exit::OK)
}

fn no_id() -> Failure {
    Failure::new(exit::STORAGE, "the store adopted the key but gave no id back")
}

/// Opens an `import-keys` file.
fn open_import_file(path: &Path) -> Result<std::fs::File, Failure> {
    std::fs::File::open(path)
        .map_err(|e| Failure::new(exit::USAGE, format!("cannot read {}: {e}", path.display())))
}

/// Reads the keys of an `import-keys` file (`path`, read from `input`): one key a line,
/// the first bad line named.
fn read_import(path: &Path, input: impl BufRead) -> Result<Vec<ExistingKey>, Failure> {
    let shown = path.display();
    keyledger::read_import_lines(input).map_err(|e| match e {
        Error::Io(e) => Failure::new(exit::USAGE, format!("cannot read {shown}: {e}")),
        Error::ImportEntry { .. } => nothing_imported(e.into()),
        other => Failure::from(other).context(shown),
    })
}

/// The library names the bad entry of an import by its position from 1 (`key 3: ...`);
/// `entry` says how to name it here.
fn import_failure(failure: Failure, entry: impl Fn(usize) -> String) -> Failure {
    let inner = failure.cause.as_deref().and_then(|cause| match cause {
        ErrorJson {
            error,
            index: Some(index),
            source: Some(source),
            ..
        } if error == "import_entry" => Some((*index, source.as_ref().clone())),
        _ => None,
    });
    match inner {
        Some((index, source)) => {
            let mut failure = Failure::from(source);
            failure.message.insert_str(0, &entry(index));
            failure
        }
        None => failure,
    }
}

/// An `import-keys` failure: the bad line named, and that nothing was imported.
fn nothing_imported(failure: Failure) -> Failure {
    let mut failure = import_failure(failure, |n| format!("line {n}: "));
    failure.message.push_str("; nothing was imported");
    failure
}

pub(super) fn import_keys(
    target: &Target,
    args: ImportKeysArgs,
    out: &mut impl Write,
) -> Result<u8, Failure> {
    let (imported, names) = match target {
        Target::Local(store) => {
            let adopted = read_import(&args.file, io::BufReader::new(open_import_file(&args.file)?))?;
            let keys = store.open(true)?;
            // Every line holds one key, so the library's entry N is line N.
            let ids = keys
                .import_keys(&args.who.actor()?, adopted)
                .map_err(|e| nothing_imported(e.into()))?;
            let names: HashMap<String, String> = ids
                .iter()
                .filter_map(|id| keys.key(*id))
                .map(|v| (v.id.to_string(), v.name))
                .collect();
            let imported = (1..).zip(ids).map(|(line, id)| ImportedJson::new(line, id));
            (imported.collect::<Vec<_>>(), names)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => {
            let lines = read_import_bytes(&args.file)?;
            // Read here as on the store, for the same refusals of a bad file.
            read_import(&args.file, &lines[..])?;
            let imported = client.import(lines).map_err(nothing_imported)?;
            let names: HashMap<String, String> = if args.json {
                HashMap::new()
            } else {
                let listed = client.list(true, None, None)?;
                listed.iter().map(|k| (k.id.clone(), k.name.clone())).collect()
            };
            (imported, names)
        }
    };
    if args.json {
        for line in &imported {
            write_json(out, line)?;
        }
        return Ok(exit::OK);
    }
    let mut table = render::Table::new(vec!["LINE", "ID", "NAME"]);
    for line in &imported {
        let name = names.get(&line.id).cloned().unwrap_or_default();
        table.row(vec![line.line.to_string(), line.id.clone(), name]);
    }
    table.write(out, "")?;
    let count = imported.len();
    writeln!(
        out,
        "imported {count} key{} from {} in one commit; keyledger kept only their hashes",
        if count == 1 { "" } else { "s" },
        args.file.display()
    )?;
    Ok(exit::OK)
}

/// An `import-keys` file whole, to send: it holds secrets, so its buffer is sized once and
/// zeroed when dropped.
#[cfg(feature = "client")]
fn read_import_bytes(path: &Path) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let file = open_import_file(path)?;
    let cannot = |e: io::Error| Failure::new(exit::USAGE, format!("cannot read {}: {e}", path.display()));
    let limit = keyledger::MAX_IMPORT_BYTES + 1;
    let size = file.metadata().map_err(cannot)?.len().min(limit);
    let mut bytes = Zeroizing::new(Vec::with_capacity(
        usize::try_from(size).unwrap_or(0).saturating_add(1),
    ));
    file.take(limit).read_to_end(&mut bytes).map_err(cannot)?;
    Ok(bytes)
}

/// What `whitelist` and `unwhitelist` do.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Add,
    Remove,
    /// Remove, even the last entry.
    RemoveToAny,
}

pub(super) fn change_whitelist(
    target: &Target,
    args: WhitelistArgs,
    change: Change,
    out: &mut impl Write,
) -> Result<u8, Failure> {
    let (id, nets) = (args.key_id, &args.nets);
    let changed = match target {
        Target::Local(store) => change_whitelist_here(store, &args, change),
        #[cfg(feature = "client")]
        Target::Remote(client) => {
            client.whitelist(id, nets, change == Change::Add, change == Change::RemoveToAny)
        }
    };
    let view = changed.map_err(|mut failure| {
        if failure.kind() == Some("last_whitelist_entry") {
            failure.message.push_str(" (pass --allow-any-address to mean it)");
        }
        failure
    })?;
    let given: Vec<String> = nets.iter().map(ToString::to_string).collect();
    writeln!(
        out,
        "{} {} on key {id} \"{}\"; its whitelist is now: {}",
        if change == Change::Add {
            "whitelisted"
        } else {
            "unwhitelisted"
        },
        render::whitelist(&given),
        view.name,
        render::whitelist(&view.whitelist)
    )?;
    Ok(exit::OK)
}

fn change_whitelist_here(store: &Store, args: &WhitelistArgs, change: Change) -> Result<KeyJson, Failure> {
    let keys = store.open(false)?;
    let (actor, id) = (args.who.actor()?, args.key_id);
    let nets = args.nets.iter().copied();
    match change {
        Change::Add => keys.whitelist_ip(&actor, id, nets)?,
        Change::Remove => keys.unwhitelist_ip(&actor, id, nets)?.seq,
        Change::RemoveToAny => keys.unwhitelist_ip_allowing_any_address(&actor, id, nets)?.seq,
    };
    Ok(KeyJson::from(&existing_key(&keys, id)?))
}

pub(super) fn delete(target: &Target, args: KeyArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let view = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            keys.delete_key(&args.who.actor()?, args.key_id)?;
            KeyJson::from(&existing_key(&keys, args.key_id)?)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => client.delete(args.key_id)?,
    };
    writeln!(
        out,
        "deleted key {} \"{}\"; it no longer verifies",
        view.id, view.name
    )?;
    Ok(exit::OK)
}

/// `list [--all] [--external-id ID] [--limit N]`: every key (or the first N); through
/// `--server`, a page after another.
pub(super) fn list(
    target: &Target,
    all: bool,
    external_id: Option<&str>,
    limit: Option<usize>,
    json: bool,
    out: &mut impl Write,
) -> Result<u8, Failure> {
    let views: Vec<KeyJson> = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            let views = if all { keys.all_keys() } else { keys.keys() };
            views
                .iter()
                .filter(|v| external_id.is_none_or(|want| v.external_id.as_deref() == Some(want)))
                .take(limit.unwrap_or(usize::MAX))
                .map(KeyJson::from)
                .collect()
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => client.list(all, external_id, limit)?,
    };
    if json {
        for view in &views {
            write_json(out, view)?;
        }
    } else if views.is_empty() {
        writeln!(out, "{}", if all { "no keys" } else { "no live keys" })?;
    } else {
        render::keys_table(&views).write(out, "")?;
    }
    Ok(exit::OK)
}

pub(super) fn show(target: &Target, id: KeyId, json: bool, out: &mut impl Write) -> Result<u8, Failure> {
    let view = match target {
        Target::Local(store) => KeyJson::from(&existing_key(&store.open(false)?, id)?),
        #[cfg(feature = "client")]
        Target::Remote(client) => client.show(id)?,
    };
    if json {
        write_json(out, &view)?;
    } else {
        render::key_details(out, &view)?;
    }
    Ok(exit::OK)
}
