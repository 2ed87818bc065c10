//! The JSON of keys' external ids, metadata and updates: the body of `PATCH
//! /v1/keys/{id}` (merge semantics: only the fields present change; `null` removes an
//! external id or metadata) and what an `updated` audit entry says changed.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::model::error::Error;
use crate::model::owner::{KeyUpdate, Meta};
use crate::projection::KeyChanges;

/// A field that may be present with `null`: `Some(None)`; absent: `None` (with
/// `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// What `PATCH /v1/keys/{id}` takes. Any other field is refused (400 naming it).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateJson {
    #[serde(default)]
    name: Option<String>,
    /// Every role the key is to hold.
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    add_roles: Vec<String>,
    #[serde(default)]
    remove_roles: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    external_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    meta: Option<Option<Value>>,
}

impl UpdateJson {
    /// The library's update.
    pub(crate) fn into_update(self) -> Result<KeyUpdate, Error> {
        let mut update = KeyUpdate::new();
        if let Some(name) = self.name {
            update = update.name(name);
        }
        if let Some(roles) = self.roles {
            update = update.roles(roles);
        }
        for role in self.add_roles {
            update = update.add_role(role);
        }
        for role in self.remove_roles {
            update = update.remove_role(role);
        }
        update = match self.external_id {
            Some(Some(id)) => update.external_id(id),
            Some(None) => update.no_external_id(),
            None => update,
        };
        update = match self.meta {
            Some(Some(meta)) => update.meta(Meta::from_value(meta)?),
            Some(None) => update.no_meta(),
            None => update,
        };
        Ok(update)
    }
}

/// What an `updated` audit entry changed ([`AuditJson::changes`](crate::json::AuditJson)):
/// only the fields that changed are present; `"external_id": null` or `"meta": null` says
/// it was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct ChangesJson {
    /// The new name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The new roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// The new external id (`null`: removed).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub external_id: Option<Option<String>>,
    /// The new metadata (`null`: removed).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Option<Value>>,
}

impl From<&KeyChanges> for ChangesJson {
    fn from(c: &KeyChanges) -> Self {
        ChangesJson {
            name: c.name.clone(),
            roles: c.roles.clone(),
            external_id: c.external_id.clone(),
            meta: c.meta.as_ref().map(|m| m.as_ref().map(Meta::to_value)),
        }
    }
}
