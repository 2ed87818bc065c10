//! The JSON of a page: `{"keys": [...], "next": CURSOR}` for key listings and
//! `{"entries": [...], "next": CURSOR}` for the audit trail and the security trail, as
//! `GET /v1/keys` and `GET /v1/audit` answer and the command line reads them back. Shapes
//! only; the cursor is the store's, opaque here.

use serde::{Deserialize, Serialize};

use crate::store::page::Page;

/// A page of keys (`GET /v1/keys`, `GET /v1/audit?at=SEQ`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct KeyPageJson {
    /// The keys of this page, in the listing's order.
    pub keys: Vec<crate::json::keys::KeyJson>,
    /// The next page's cursor (`?cursor=`, with the same query), or null at the end.
    pub next: Option<String>,
}

/// A page of audit entries or refused attempts (`GET /v1/audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct EntryPageJson<T> {
    /// The entries of this page, oldest first.
    pub entries: Vec<T>,
    /// The next page's cursor (`?cursor=`, with the same query), or null at the end.
    pub next: Option<String>,
}

impl<'a, V: 'a> From<&'a Page<V>> for KeyPageJson
where
    crate::json::keys::KeyJson: From<&'a V>,
{
    fn from(page: &'a Page<V>) -> Self {
        KeyPageJson {
            keys: page.items.iter().map(crate::json::keys::KeyJson::from).collect(),
            next: page.next.clone(),
        }
    }
}

impl<T> EntryPageJson<T> {
    /// The page's entries, each made JSON.
    pub fn new<'a, V: 'a>(page: &'a Page<V>) -> Self
    where
        T: From<&'a V>,
    {
        EntryPageJson {
            entries: page.items.iter().map(T::from).collect(),
            next: page.next.clone(),
        }
    }
}
