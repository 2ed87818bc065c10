//! `update`: a key's name, roles, external id or metadata, changed in one record; only the
//! fields given change. On the store or through `--server` (`PATCH /v1/keys/{id}`).

use std::io::Write;

use clap::{ArgGroup, Args};
use keyledger::{KeyJson, KeyUpdate, Meta};

use super::args::KeyArgs;
use super::exit::{self, Failure};
use super::{Target, existing_key, write_json};

/// `update`: at least one change; roles replaced (`--role`) or added and removed, not both.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true).args([
    "name", "roles", "add_roles", "remove_roles", "external_id", "no_external_id", "meta", "no_meta",
])))]
pub(super) struct UpdateArgs {
    #[command(flatten)]
    pub(super) key: KeyArgs,
    /// The key's new name
    #[arg(long)]
    name: Option<String>,
    /// Every role the key is to grant (repeat for more): they replace its roles
    #[arg(long = "role", value_name = "R", conflicts_with_all = ["add_roles", "remove_roles"])]
    roles: Vec<String>,
    /// A role to add (repeat for more)
    #[arg(long = "add-role", value_name = "R")]
    add_roles: Vec<String>,
    /// A role to remove (repeat for more); a key keeps at least one
    #[arg(long = "remove-role", value_name = "R")]
    remove_roles: Vec<String>,
    /// The key owner's id outside keyledger (a user or tenant id)
    #[arg(long, value_name = "ID", conflicts_with = "no_external_id")]
    external_id: Option<String>,
    /// Remove the key's external id
    #[arg(long)]
    no_external_id: bool,
    /// The key's metadata: a JSON object of at most 4 KiB; it replaces the key's
    #[arg(long, value_name = "JSON", conflicts_with = "no_meta")]
    meta: Option<String>,
    /// Remove the key's metadata
    #[arg(long)]
    no_meta: bool,
    /// One JSON object: the key as it is now
    #[arg(long)]
    json: bool,
}

impl UpdateArgs {
    /// The library's update (the metadata checked by the library's one parser).
    fn update(&self) -> Result<KeyUpdate, Failure> {
        let mut update = KeyUpdate::new();
        if let Some(name) = &self.name {
            update = update.name(name.clone());
        }
        if !self.roles.is_empty() {
            update = update.roles(self.roles.clone());
        }
        for role in &self.add_roles {
            update = update.add_role(role.clone());
        }
        for role in &self.remove_roles {
            update = update.remove_role(role.clone());
        }
        if let Some(id) = &self.external_id {
            update = update.external_id(id.clone());
        } else if self.no_external_id {
            update = update.no_external_id();
        }
        if let Some(meta) = &self.meta {
            update = update.meta(Meta::parse(meta)?);
        } else if self.no_meta {
            update = update.no_meta();
        }
        Ok(update)
    }

    /// The admin API's body: only the fields given.
    #[cfg(feature = "client")]
    fn body(&self) -> Result<serde_json::Value, Failure> {
        let mut body = serde_json::Map::new();
        if let Some(name) = &self.name {
            body.insert("name".into(), name.clone().into());
        }
        if !self.roles.is_empty() {
            body.insert("roles".into(), self.roles.clone().into());
        }
        if !self.add_roles.is_empty() {
            body.insert("add_roles".into(), self.add_roles.clone().into());
        }
        if !self.remove_roles.is_empty() {
            body.insert("remove_roles".into(), self.remove_roles.clone().into());
        }
        if let Some(id) = &self.external_id {
            body.insert("external_id".into(), id.clone().into());
        } else if self.no_external_id {
            body.insert("external_id".into(), serde_json::Value::Null);
        }
        if let Some(meta) = &self.meta {
            body.insert("meta".into(), Meta::parse(meta)?.to_value());
        } else if self.no_meta {
            body.insert("meta".into(), serde_json::Value::Null);
        }
        Ok(serde_json::Value::Object(body))
    }
}

pub(super) fn update(target: &Target, args: UpdateArgs, out: &mut impl Write) -> Result<u8, Failure> {
    let id = args.key.key_id;
    let view = match target {
        Target::Local(store) => {
            let keys = store.open(false)?;
            keys.update_key(&args.key.who.actor()?, id, args.update()?)?;
            KeyJson::from(&existing_key(&keys, id)?)
        }
        #[cfg(feature = "client")]
        Target::Remote(client) => client.update(id, &args.body()?)?,
    };
    if args.json {
        write_json(out, &view)?;
    } else {
        writeln!(out, "updated key {} \"{}\"", view.id, view.name)?;
        super::render::key_details(out, &view)?;
    }
    Ok(exit::OK)
}
