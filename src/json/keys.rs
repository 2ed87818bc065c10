//! The key's JSON shape: `create --json`, `show`, `list`, `audit --at` and the admin API's
//! key answers ([`KeyJson`]), with who deleted it ([`DeletedJson`]). Only a creation's
//! answer carries the secret: never in its `Debug`, zeroed on drop.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::credits::CreditsJson;
use super::limits::RateLimitJson;
use super::rfc3339;
use crate::model::token::ApiKey;
use crate::projection::KeyView;

/// A key: `create --json` (with `key`, the secret), `show`, `list`, `audit --at`, and the
/// admin API's key answers. The README lists every field; scripts depend on them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct KeyJson {
    /// 16 hex digits.
    pub id: String,
    /// The key's name.
    pub name: String,
    /// Its roles, in the order given.
    pub roles: Vec<String>,
    /// CIDR strings; empty admits any address.
    pub whitelist: Vec<String>,
    /// The creator's actor id.
    pub created_by: String,
    /// The role the creator acted as: `super-admin`, `admin` or `user`.
    pub created_by_role: String,
    /// RFC 3339.
    pub created_at: String,
    /// `active`, `disabled`, `expired` or `deleted`.
    pub status: String,
    /// RFC 3339, or `null` for a key that never expires.
    pub expires_at: Option<String>,
    /// The start of the minute of the last successful verify, or `null`.
    pub last_used_at: Option<String>,
    /// `null` while the key is not deleted; the same as `deleted_by` and `deleted_at`.
    pub deleted: Option<DeletedJson>,
    /// Who deleted it, or `null`.
    pub deleted_by: Option<String>,
    /// The role they acted as, or `null`.
    pub deleted_by_role: Option<String>,
    /// When it was deleted, or `null`.
    pub deleted_at: Option<String>,
    /// Adopted from another system rather than generated.
    pub imported: bool,
    /// `klk_…` and the last four characters.
    pub hint: String,
    /// For an admin key: the person it acts as (named when it was made, else its
    /// creator); `null` for other keys.
    #[serde(default)]
    pub acts_for: Option<String>,
    /// Its rate limits, shortest window first; empty for none.
    #[serde(default)]
    pub rate_limits: Vec<RateLimitJson>,
    /// Its credits (what remains now, on the host that answers); `null` for none.
    #[serde(default)]
    pub credits: Option<CreditsJson>,
    /// Its owner's id outside keyledger; `null` for none.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Its metadata (a JSON object); `null` for none.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Value>,
    /// The secret: present only in a creation's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// In a revocation's answer (delete, disable, unwhitelist) on a host of a fleet: the
    /// hosts that may still accept the key when the wait ended (see
    /// [`Revoked::unconfirmed`](crate::fleet::Revoked::unconfirmed); `*` for hosts this one could
    /// not see). Absent when there are none (every host confirmed, or a single host), so a
    /// single host's answers are those of the command line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed: Vec<String>,
}

/// Who deleted a key, and when: [`KeyJson::deleted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct DeletedJson {
    /// The actor id.
    pub by: String,
    /// RFC 3339.
    pub at: String,
}

impl From<&KeyView> for KeyJson {
    fn from(view: &KeyView) -> Self {
        KeyJson {
            id: view.id.to_string(),
            name: view.name.clone(),
            roles: view.roles.clone(),
            whitelist: view.whitelist.iter().map(ToString::to_string).collect(),
            created_by: view.created_by.id().to_owned(),
            created_by_role: view.created_by.role().as_str().to_owned(),
            created_at: rfc3339(view.created_at),
            status: view.status.as_str().to_owned(),
            expires_at: view.expires_at.map(rfc3339),
            last_used_at: view.last_used_at.map(rfc3339),
            deleted: view.deleted.as_ref().map(|(by, at)| DeletedJson {
                by: by.id().to_owned(),
                at: rfc3339(*at),
            }),
            deleted_by: view.deleted.as_ref().map(|(by, _)| by.id().to_owned()),
            deleted_by_role: view.deleted.as_ref().map(|(by, _)| by.role().as_str().to_owned()),
            deleted_at: view.deleted.as_ref().map(|(_, at)| rfc3339(*at)),
            imported: view.imported,
            hint: view.hint.clone(),
            acts_for: view.acts_for.clone(),
            rate_limits: RateLimitJson::list(&view.rate_limits),
            credits: view.credits.as_ref().map(CreditsJson::from),
            external_id: view.external_id.clone(),
            meta: view.meta.as_ref().map(crate::model::owner::Meta::to_value),
            key: None,
            unconfirmed: Vec::new(),
        }
    }
}

impl KeyJson {
    /// A new key's answer: the view with its secret, shown this once.
    pub fn created(view: &KeyView, key: &ApiKey) -> Self {
        let mut json = KeyJson::from(view);
        json.key = Some(key.expose_secret().to_owned());
        json
    }
}

impl fmt::Debug for KeyJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyJson")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("status", &self.status)
            .field("hint", &self.hint)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Drop for KeyJson {
    fn drop(&mut self) {
        if let Some(key) = self.key.as_mut() {
            key.zeroize();
        }
    }
}
