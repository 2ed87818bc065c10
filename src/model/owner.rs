//! Who a key belongs to outside keyledger and what else its issuer noted: the external id
//! and the metadata object ([`Meta`]), and the request to change a key ([`KeyUpdate`]).
//! Only checks and holds values; it never reads state (the ledger resolves an update
//! against the key it names).

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::rules::{Origin, refuse_key_shaped, validate_external_id, validate_name, validate_roles};
use crate::model::error::Error;

/// The most a key's metadata may take, as its canonical JSON text, in bytes.
pub const MAX_META_BYTES: usize = 4096;
/// The most levels of objects and arrays a key's metadata may nest, itself counted: far
/// below the 128 at which JSON readers (serde_json's among them) stop, so that an answer
/// holding it (a page of keys, an audit entry's changes) can always be read back.
pub const MAX_META_DEPTH: usize = 32;

/// A key's metadata: a JSON object of at most [`MAX_META_BYTES`] bytes (compact, keys
/// sorted: its one canonical form) nesting at most [`MAX_META_DEPTH`] levels, with no text shaped like an API key anywhere in it,
/// key or value. Cheap to clone.
///
/// # Example
/// ```
/// use keyledger::Meta;
/// let meta = Meta::parse(r#"{"plan": "pro", "seats": 5}"#).unwrap();
/// assert_eq!(meta.as_str(), r#"{"plan":"pro","seats":5}"#);
/// assert!(Meta::parse("[1, 2]").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Meta(Arc<str>);

impl Meta {
    /// Parses and checks metadata given as JSON text.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] with field `meta`: not JSON, not an object, larger than
    /// [`MAX_META_BYTES`] once compact, nested deeper than [`MAX_META_DEPTH`], or holding
    /// key-shaped text.
    pub fn parse(text: &str) -> Result<Meta, Error> {
        Meta::parse_as(text, Origin::Command)
    }

    /// Checks metadata given as a JSON value.
    ///
    /// # Errors
    /// As [`Meta::parse`].
    pub fn from_value(value: Value) -> Result<Meta, Error> {
        Meta::checked(value, Origin::Command)
    }

    /// Metadata read back from a log or a snapshot: it must be in its canonical form (one
    /// encoding per record) and within the size, and may hold what later rules refuse.
    pub(crate) fn stored(text: &str) -> Result<Meta, Error> {
        let meta = Meta::parse_as(text, Origin::Stored)?;
        if *meta.0 != *text {
            return Err(Error::invalid("meta", "stored metadata is not canonical"));
        }
        Ok(meta)
    }

    fn parse_as(text: &str, origin: Origin) -> Result<Meta, Error> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| Error::invalid("meta", format!("is not JSON: {e}")))?;
        Meta::checked(value, origin)
    }

    fn checked(value: Value, origin: Origin) -> Result<Meta, Error> {
        if !value.is_object() {
            return Err(Error::invalid("meta", "must be a JSON object"));
        }
        if origin == Origin::Command {
            if depth(&value) > MAX_META_DEPTH {
                return Err(Error::invalid(
                    "meta",
                    format!("must nest at most {MAX_META_DEPTH} levels of objects and arrays"),
                ));
            }
            refuse_key_shaped_inside(&value)?;
        }
        let text = value.to_string();
        if text.len() > MAX_META_BYTES {
            return Err(Error::invalid(
                "meta",
                format!(
                    "must be at most {MAX_META_BYTES} bytes as compact JSON, got {}",
                    text.len()
                ),
            ));
        }
        Ok(Meta(text.into()))
    }

    /// The metadata as compact JSON text, keys sorted.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The metadata as a JSON value (an object).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many levels of objects and arrays `value` nests (0 for a scalar).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Refuses any key or string value, at any depth, shaped like an API key.
fn refuse_key_shaped_inside(value: &Value) -> Result<(), Error> {
    match value {
        Value::String(s) => refuse_key_shaped("meta", s),
        Value::Array(items) => items.iter().try_for_each(refuse_key_shaped_inside),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            refuse_key_shaped("meta", k)?;
            refuse_key_shaped_inside(v)
        }),
        _ => Ok(()),
    }
}

/// A key's external id and metadata, as `KeyStore::key_owner` hands them to a host after a
/// verify (and the tower layer puts them in the request's extensions). Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyOwner {
    /// The key owner's id outside keyledger, if it was given one.
    pub external_id: Option<Arc<str>>,
    /// Its metadata, if it was given any.
    pub meta: Option<Meta>,
}

/// What to change of a key: only the fields named change (`KeyStore::update_key`). Roles
/// are either replaced ([`KeyUpdate::roles`]) or added to and removed from
/// ([`KeyUpdate::add_role`], [`KeyUpdate::remove_role`]), not both.
///
/// # Example
/// ```
/// use keyledger::{Actor, KeyStore, KeyUpdate, Meta, NewKey};
/// let store = KeyStore::builder().open_temporary().unwrap();
/// let alice = Actor::admin("alice");
/// let created = store.create_key(&alice, NewKey::new("bot").role("bot")).unwrap();
/// let update = KeyUpdate::new()
///     .name("billing bot")
///     .add_role("billing")
///     .external_id("tenant-42")
///     .meta(Meta::parse(r#"{"plan": "pro"}"#).unwrap());
/// store.update_key(&alice, created.id, update).unwrap();
/// let key = store.key(created.id).unwrap();
/// assert_eq!((key.name.as_str(), key.external_id.as_deref()), ("billing bot", Some("tenant-42")));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUpdate {
    pub(crate) name: Option<String>,
    pub(crate) roles: Option<Vec<String>>,
    pub(crate) add_roles: Vec<String>,
    pub(crate) remove_roles: Vec<String>,
    pub(crate) external_id: Option<Option<String>>,
    pub(crate) meta: Option<Option<Meta>>,
}

impl KeyUpdate {
    /// An update that, so far, changes nothing.
    pub fn new() -> Self {
        KeyUpdate::default()
    }

    /// Renames the key.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Replaces the key's roles with these.
    pub fn roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles = Some(roles.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a role (one the key already holds changes nothing).
    pub fn add_role(mut self, role: impl Into<String>) -> Self {
        self.add_roles.push(role.into());
        self
    }

    /// Removes a role (one the key does not hold changes nothing).
    pub fn remove_role(mut self, role: impl Into<String>) -> Self {
        self.remove_roles.push(role.into());
        self
    }

    /// Sets the key's external id.
    pub fn external_id(mut self, id: impl Into<String>) -> Self {
        self.external_id = Some(Some(id.into()));
        self
    }

    /// Removes the key's external id.
    pub fn no_external_id(mut self) -> Self {
        self.external_id = Some(None);
        self
    }

    /// Replaces the key's metadata.
    pub fn meta(mut self, meta: Meta) -> Self {
        self.meta = Some(Some(meta));
        self
    }

    /// Removes the key's metadata.
    pub fn no_meta(mut self) -> Self {
        self.meta = Some(None);
        self
    }

    /// Whether it names no field at all.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.roles.is_none()
            && self.add_roles.is_empty()
            && self.remove_roles.is_empty()
            && self.external_id.is_none()
            && self.meta.is_none()
    }

    /// Checks every field it names by the rules of a creation, and returns it with the
    /// name trimmed.
    pub(crate) fn validated(&self) -> Result<KeyUpdate, Error> {
        if self.is_empty() {
            return Err(Error::invalid("update", "names no field to change"));
        }
        let name = self
            .name
            .as_deref()
            .map(|n| validate_name(n, Origin::Command).map(str::to_owned))
            .transpose()?;
        if let Some(roles) = &self.roles {
            if !self.add_roles.is_empty() || !self.remove_roles.is_empty() {
                return Err(Error::invalid(
                    "role",
                    "replace the roles, or add and remove some, not both",
                ));
            }
            validate_roles(roles)?;
        }
        for role in self.add_roles.iter().chain(&self.remove_roles) {
            super::rules::validate_role(role)?;
        }
        if let Some(Some(id)) = &self.external_id {
            validate_external_id(id, Origin::Command)?;
        }
        Ok(KeyUpdate { name, ..self.clone() })
    }
}
