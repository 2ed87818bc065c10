//! The admin API's listings: `GET /v1/keys` and `GET /v1/audit` answer a page
//! (`{"keys"|"entries": [...], "next": CURSOR}`, at most `limit` items, 100 by default),
//! and with `unpaged=true` the whole list in the shape of 0.5 (a JSON array of
//! keys; JSON Lines for the audit), for clients written against it.
//!
//! Parses the parameters into the store's filter and hands the cursor through: the store
//! pages, checks the cursor and the limit; nothing here decides which keys match.

use axum::response::Response;
use http::StatusCode;

use super::super::Reject;
use super::super::body::{self, Layout};
use super::extract::{Admin, Params, flag, one_of};
use super::view_of;
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

/// `GET /v1/keys`'s query.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListKeysQuery {
    /// `true`: deleted keys too (by default, the keys not deleted).
    #[param(value_type = Option<bool>)]
    all: Option<String>,
    /// `true`: every key at once as a JSON array, 0.5's answer (takes `all` only).
    #[param(value_type = Option<bool>)]
    unpaged: Option<String>,
    /// Keys whose name, id or external id holds this text.
    q: Option<String>,
    /// Keys holding this role.
    role: Option<String>,
    /// Keys in this status (implies `all` for `deleted`).
    #[param(value_type = Option<String>, schema_with = statuses)]
    status: Option<String>,
    /// Keys of this owner or tenant.
    external_id: Option<String>,
    /// `oldest` first (the default) or `newest`.
    #[param(value_type = Option<String>, schema_with = orders)]
    order: Option<String>,
    /// The most keys in the page (default 100).
    #[param(value_type = Option<usize>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The previous page's `next`: the page after it, for the same query.
    cursor: Option<String>,
}

/// `GET /v1/audit`'s query.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Entries about this key (16 hex digits); with `at`, only this key.
    #[param(pattern = "^[0-9a-f]{16}$")]
    key: Option<String>,
    /// Entries by this actor.
    actor: Option<String>,
    /// Entries of this kind.
    #[param(value_type = Option<String>, schema_with = kinds)]
    kind: Option<String>,
    /// RFC 3339: entries at or after this time.
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// RFC 3339: entries at or before this time.
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
    /// A sequence number: the keys as they stood after that record (takes `key` only).
    #[param(value_type = Option<u64>, minimum = 0)]
    at: Option<String>,
    /// `true`: the security trail of refused commands (takes `key`, `actor`, `since`,
    /// `until`).
    #[param(value_type = Option<bool>)]
    refused: Option<String>,
    /// For the audit trail's pages: `oldest` first (the default) or `newest`.
    #[param(value_type = Option<String>, schema_with = orders)]
    order: Option<String>,
    /// `true`: every entry at once, as JSON Lines (0.5's answer); no `limit` or `cursor`.
    #[param(value_type = Option<bool>)]
    unpaged: Option<String>,
    /// The most entries in the page (default 100).
    #[param(value_type = Option<usize>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The previous page's `next`: the page after it, for the same query.
    cursor: Option<String>,
}

fn statuses() -> utoipa::openapi::Object {
    one_of(KeyStatus::ALL.map(KeyStatus::as_str))
}

fn orders() -> utoipa::openapi::Object {
    one_of(["oldest", "newest"])
}

fn kinds() -> utoipa::openapi::Object {
    one_of(EventKind::ALL.map(EventKind::as_str))
}

/// `GET /v1/keys`'s answer: a page, or with `unpaged=true` every key (written a key at a
/// time, never held whole: this type documents the shapes and is never built).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "the OpenAPI document's description of an answer written a chunk at a time"
)]
#[serde(untagged)]
pub(super) enum KeysAnswer {
    /// A page.
    Page(KeyPageJson),
    /// `unpaged=true`: every key.
    All(Vec<KeyJson>),
}

/// `GET /v1/audit`'s answer (JSON): a page of the audit trail, of the keys as they stood
/// (`at`), or of refused commands (`refused=true`). Documents the shapes; never built.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code, reason = "the OpenAPI document's description of three answers")]
#[serde(untagged)]
pub(super) enum AuditAnswer {
    /// The audit trail.
    Trail(EntryPageJson<AuditJson>),
    /// `at`: the keys as they stood.
    Keys(KeyPageJson),
    /// `refused=true`: refused commands.
    Refused(EntryPageJson<RefusedJson>),
}

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

/// `GET /v1/keys[?all=true][&q=&role=&status=&external_id=&order=][&limit=&cursor=]`: a page of the
/// keys (by default the live ones, oldest first): `{"keys": [...], "next": CURSOR}`.
/// `unpaged=true[&all=true]`: every one, as a JSON array (0.5's answer).
#[utoipa::path(get, path = "/keys", tag = "keys", operation_id = "list_keys", params(ListKeysQuery),
    responses((status = 200, description = "A page of keys (`unpaged=true`: every one, as an array).",
        body = KeysAnswer)))]
pub(super) async fn list(admin: Admin, Params(params): Params<ListKeysQuery>) -> Result<Response, Reject> {
    let all = flag("all", params.all.as_ref())?;
    if flag("unpaged", params.unpaged.as_ref())? {
        let ListKeysQuery {
            q,
            role,
            status,
            external_id,
            order,
            limit,
            cursor,
            ..
        } = &params;
        if [q, role, status, external_id, order, limit, cursor]
            .iter()
            .any(|p| p.is_some())
        {
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
        status: params.status.map(|s| s.parse::<KeyStatus>()).transpose()?,
        all,
        newest_first: newest_first(params.order.as_ref())?,
        query: params.q,
        role: params.role,
        external_id: params.external_id,
    };
    let limit = limit(params.limit.as_ref())?;
    let cursor = params.cursor;
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
#[utoipa::path(get, path = "/audit", tag = "audit", operation_id = "audit", params(AuditQuery),
    responses((status = 200, description = "A page of the audit trail; with `at`, a page of the keys as they stood; \
        with `refused=true`, a page of refused commands. With `unpaged=true`: every entry, one JSON object a line.",
        content((AuditAnswer = "application/json"), (String = "application/x-ndjson")))))]
pub(super) async fn audit(admin: Admin, Params(params): Params<AuditQuery>) -> Result<Response, Reject> {
    let refused = flag("refused", params.refused.as_ref())?;
    let unpaged = flag("unpaged", params.unpaged.as_ref())?;
    let at_given = params.at.is_some();
    if refused && (params.kind.is_some() || at_given) {
        return Err(Error::invalid("query", "refused=true takes key, actor, since and until only").into());
    }
    if at_given
        && [&params.actor, &params.kind, &params.since, &params.until]
            .iter()
            .any(|p| p.is_some())
    {
        return Err(Error::invalid("query", "at takes key only").into());
    }
    if (refused || at_given || unpaged) && params.order.is_some() {
        return Err(Error::invalid("query", "order is for the audit trail's pages only").into());
    }
    let newest = newest_first(params.order.as_ref())?;
    if unpaged && (params.limit.is_some() || params.cursor.is_some()) {
        return Err(Error::invalid("query", "unpaged=true takes no limit or cursor").into());
    }
    let filter = AuditFilter {
        key: params.key.as_deref().map(str::parse::<KeyId>).transpose()?,
        actor: params.actor.clone(),
        kind: params.kind.as_deref().map(str::parse::<EventKind>).transpose()?,
        since: params
            .since
            .as_deref()
            .map(|s| parse_time("since", s))
            .transpose()?,
        until: params
            .until
            .as_deref()
            .map(|s| parse_time("until", s))
            .transpose()?,
    };
    let at = params
        .at
        .as_deref()
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| Error::invalid("at", "give a sequence number"))
        })
        .transpose()?;
    let limit = limit(params.limit.as_ref())?;
    let cursor = params.cursor;
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
