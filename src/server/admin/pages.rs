//! The admin API's listings: `GET /v1/keys` and `GET /v1/audit` answer a page
//! (`{"keys"|"entries": [...], "next": CURSOR}`, at most `limit` items, 100 by default),
//! and with `unpaged=true` the whole list in the shape of 0.5 (a JSON array of
//! keys; JSON Lines for the audit), for clients written against it.
//!
//! Parses the parameters into the store's filter and hands the cursor through: the store
//! pages, checks the cursor and the limit; nothing here decides which keys match.

use axum::response::Response;
use http::{StatusCode, Uri};

use super::super::Reject;
use super::super::body::{self, Layout};
use super::{Admin, flag, query, view_of};
use crate::json::AuditFilter;
use crate::json::AuditJson;
use crate::json::RefusedJson;
use crate::json::keys::KeyJson;
use crate::json::page::{EntryPageJson, KeyPageJson};
use crate::json::parse_time;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::record::EventKind;
use crate::projection::KeyStatus;
use crate::projection::page::KeyFilter;
use crate::store::page::DEFAULT_PAGE_LIMIT;

/// `limit`: a page size (the store checks its range).
fn limit(value: Option<&String>) -> Result<usize, Reject> {
    match value {
        None => Ok(DEFAULT_PAGE_LIMIT),
        Some(v) => Ok(v
            .parse::<usize>()
            .map_err(|_| Error::invalid("limit", "give a page size, a whole number"))?),
    }
}

/// `order`: `oldest` (first, the default) or `newest`.
fn newest_first(value: Option<&String>) -> Result<bool, Reject> {
    match value.map(String::as_str) {
        None | Some("oldest") => Ok(false),
        Some("newest") => Ok(true),
        Some(_) => Err(Error::invalid("order", "give oldest or newest").into()),
    }
}

/// The paging parameters, which `unpaged=true` does not take.
const PAGING: [&str; 2] = ["limit", "cursor"];

/// `GET /v1/keys[?all=true][&q=&role=&status=&external_id=&order=][&limit=&cursor=]`: a page of the
/// keys (by default the live ones, oldest first): `{"keys": [...], "next": CURSOR}`.
/// `unpaged=true[&all=true]`: every one, as a JSON array (0.5's answer).
pub(super) async fn list(admin: Admin, uri: Uri) -> Result<Response, Reject> {
    let params = query(
        &uri,
        &[
            "all",
            "unpaged",
            "q",
            "role",
            "status",
            "external_id",
            "order",
            "limit",
            "cursor",
        ],
    )?;
    let all = flag("all", params.get("all"))?;
    if flag("unpaged", params.get("unpaged"))? {
        if params.keys().any(|p| p != "all" && p != "unpaged") {
            return Err(Error::invalid("query", "unpaged=true takes all only").into());
        }
        let views = admin
            .call(move |store, _| Ok(if all { store.all_keys() } else { store.keys() }))
            .await?;
        return Ok(body::list(Layout::Array, views, |v, out| {
            serde_json::to_writer(out, &KeyJson::from(v))
        }));
    }
    let filter = KeyFilter {
        query: params.get("q").cloned(),
        role: params.get("role").cloned(),
        status: params.get("status").map(|s| s.parse::<KeyStatus>()).transpose()?,
        all,
        newest_first: newest_first(params.get("order"))?,
        external_id: params.get("external_id").cloned(),
    };
    let limit = limit(params.get("limit"))?;
    let cursor = params.get("cursor").cloned();
    let page = admin
        .call(move |store, _| store.keys_page(&filter, cursor.as_deref(), limit))
        .await?;
    Ok(body::json(StatusCode::OK, &KeyPageJson::from(&page)))
}

/// `GET /v1/audit` with the command line's filters as parameters (`key`, `actor`, `kind`,
/// `since`, `until`; `at=SEQ` for the keys as they stood then; `refused=true` for the
/// security trail), a page at a time (`limit`, `cursor`; `order=newest` for the audit
/// trail newest first): `{"entries": [...], "next"}`
/// (`{"keys": ...}` with `at`). `unpaged=true`: every one, as JSON Lines, the objects
/// `audit --json` prints (0.5's answer).
pub(super) async fn audit(admin: Admin, uri: Uri) -> Result<Response, Reject> {
    let params = query(
        &uri,
        &[
            "key", "actor", "kind", "since", "until", "at", "refused", "order", "unpaged", "limit", "cursor",
        ],
    )?;
    let given = |name: &str| params.contains_key(name);
    let refused = flag("refused", params.get("refused"))?;
    let unpaged = flag("unpaged", params.get("unpaged"))?;
    if refused && (given("kind") || given("at")) {
        return Err(Error::invalid("query", "refused=true takes key, actor, since and until only").into());
    }
    if given("at") && ["actor", "kind", "since", "until"].iter().any(|p| given(p)) {
        return Err(Error::invalid("query", "at takes key only").into());
    }
    if (refused || given("at") || unpaged) && given("order") {
        return Err(Error::invalid("query", "order is for the audit trail's pages only").into());
    }
    let newest = newest_first(params.get("order"))?;
    if unpaged && PAGING.iter().any(|p| given(p)) {
        return Err(Error::invalid("query", "unpaged=true takes no limit or cursor").into());
    }
    let filter = AuditFilter {
        key: params.get("key").map(|s| s.parse::<KeyId>()).transpose()?,
        actor: params.get("actor").cloned(),
        kind: params.get("kind").map(|s| s.parse::<EventKind>()).transpose()?,
        since: params.get("since").map(|s| parse_time("since", s)).transpose()?,
        until: params.get("until").map(|s| parse_time("until", s)).transpose()?,
    };
    let at = params
        .get("at")
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| Error::invalid("at", "give a sequence number"))
        })
        .transpose()?;
    let limit = limit(params.get("limit"))?;
    let cursor = params.get("cursor").cloned();
    // What the cursor is bound to: the filter as parsed, written one way.
    let binding = format!("{filter:?}");
    if refused {
        // A refused command may name a key that never existed: no existence check.
        if unpaged {
            let attempts = admin
                .call(move |store, _| {
                    Ok(store
                        .refused()?
                        .into_iter()
                        .filter(|a| filter.matches_refused(a))
                        .collect::<Vec<_>>())
                })
                .await?;
            return Ok(body::list(Layout::Lines, attempts, |a, out| {
                serde_json::to_writer(out, &RefusedJson::from(a))
            }));
        }
        let page = admin
            .call(move |store, _| {
                store.refused_page(&binding, |a| filter.matches_refused(a), cursor.as_deref(), limit)
            })
            .await?;
        return Ok(body::json(
            StatusCode::OK,
            &EntryPageJson::<RefusedJson>::new(&page),
        ));
    }
    if let Some(seq) = at {
        let only = filter.key;
        if unpaged {
            let views = admin
                .call(move |store, _| {
                    if let Some(id) = only {
                        view_of(store, id)?;
                    }
                    Ok(store
                        .keys_at(seq)?
                        .into_iter()
                        .filter(|v| only.is_none_or(|id| v.id == id))
                        .collect::<Vec<_>>())
                })
                .await?;
            return Ok(body::list(Layout::Lines, views, |v, out| {
                serde_json::to_writer(out, &KeyJson::from(v))
            }));
        }
        let page = admin
            .call(move |store, _| {
                if let Some(id) = only {
                    view_of(store, id)?;
                }
                store.keys_at_page(seq, only, cursor.as_deref(), limit)
            })
            .await?;
        return Ok(body::json(StatusCode::OK, &KeyPageJson::from(&page)));
    }
    if unpaged {
        let entries = admin
            .call(move |store, _| {
                if let Some(id) = filter.key {
                    view_of(store, id)?;
                }
                Ok(store
                    .audit()
                    .into_iter()
                    .filter(|e| filter.matches(e))
                    .collect::<Vec<_>>())
            })
            .await?;
        return Ok(body::list(Layout::Lines, entries, |e, out| {
            serde_json::to_writer(out, &AuditJson::from(e))
        }));
    }
    let page = admin
        .call(move |store, _| {
            if let Some(id) = filter.key {
                view_of(store, id)?;
            }
            store.audit_page(&binding, |e| filter.matches(e), newest, cursor.as_deref(), limit)
        })
        .await?;
    Ok(body::json(
        StatusCode::OK,
        &EntryPageJson::<AuditJson>::new(&page),
    ))
}
